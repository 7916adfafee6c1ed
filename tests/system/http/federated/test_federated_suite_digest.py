"""A federated plan's digest is the home suite's hash: ``sha256:`` bit-exact in an intl home, ``sm3:`` in an sm
home; a holder learns the hash from the home's published key when it starts and pins plans by it."""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any, cast

import pyarrow as pa
import pytest

from cryptosuite import suite_of
from mpc.secagg import new_round
from sandbox.federated import FederatedPlan
from sandbox.train import FeatureEncoding
from veilbox.client import Client
from veilbox.federated import Holder, PlanRefused, home_hash_alg

HOLDERS = ("bank-north", "bank-south", "bank-east", "bank-west", "bank-centre")


class _Home:
    """A client of a home that publishes ``hash_alg`` and has no round waiting."""

    def __init__(self, hash_alg: str) -> None:
        self.hash_alg = hash_alg

    def audit_public_key(self) -> dict[str, str]:
        return {"key_id": "k", "algorithm": "sm2" if self.hash_alg == "sm3" else "ed25519", "hash_alg": self.hash_alg}

    def secagg_rounds(self, **_: Any) -> list[dict[str, Any]]:
        return []


def test_the_plan_digest_is_the_home_suites_hash(encoding: FeatureEncoding, holder_tables: Any) -> None:
    plan = FederatedPlan.calibrate(encoding, HOLDERS, 3, 2, 2.0, 1e-5, max_rows_per_holder=2000)
    canonical = json.dumps(plan.model_dump(mode="json"), sort_keys=True).encode()
    assert plan.digest() == "sha256:" + hashlib.sha256(canonical).hexdigest() == plan.summary()["digest"]
    assert plan.digest("sm3") == suite_of("sm").digest(canonical) == plan.summary("sm3")["digest"]
    assert home_hash_alg(cast(Client, _Home("sm3"))) == "sm3"
    assert home_hash_alg(cast(Client, _Home("sha256"))) == "sha256"
    with pytest.raises(ValueError):
        home_hash_alg(cast(Client, _Home("md5")))

    table: pa.Table = holder_tables[HOLDERS[0]]
    config = new_round(participants=list(plan.holders), threshold=plan.threshold, vector_length=plan.vector_length)
    holder = Holder(cast(Client, _Home("sm3")), table, name=HOLDERS[0], plan_digest=plan.digest("sm3"))
    stop = threading.Event()
    stop.set()
    holder.run(stop=stop)  # learns the home's hash, joins nothing
    assert holder.hash_alg == "sm3"
    holder.check_plan(plan, config, 0)  # the plan pinned by its SM3 digest
    intl_pin = Holder(cast(Client, _Home("sm3")), table, name=HOLDERS[0], plan_digest=plan.digest())
    intl_pin.run(stop=stop)
    with pytest.raises(PlanRefused, match="pinned"):  # a SHA-256 pin does not name a plan of an sm home
        intl_pin.check_plan(plan, config, 0)
