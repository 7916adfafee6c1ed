"""A secure-aggregation round's released sum is digested with the home suite's hash: ``sm3:`` in an ``sm`` home,
``sha256:`` (unchanged) in an ``intl`` home; `rounds_for` binds the registry to the home's hash."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np

from cryptosuite import suite_of
from gateway.services.rounds import Released, RoundRegistry, rounds_for, sum_digest

TOTAL = np.array([1, 2, 3, 0xFFFFFFFF], dtype=np.uint32)
WORDS = TOTAL.astype("<u4").tobytes()


def test_a_round_sum_digest_is_the_home_suites_hash() -> None:
    assert sum_digest(TOTAL) == "sha256:" + hashlib.sha256(WORDS).hexdigest()
    assert sum_digest(TOTAL, "sm3") == suite_of("sm").digest(WORDS) and sum_digest(TOTAL, "sm3").startswith("sm3:")
    released = Released("r1", TOTAL, ("a", "b"), 32, "sm3")
    assert released.to_json()["output_digest"] == released.digest == sum_digest(TOTAL, "sm3")
    ctx = SimpleNamespace(
        caches=SimpleNamespace(secagg_rounds=RoundRegistry()),
        engine=SimpleNamespace(dialect=SimpleNamespace(name="sqlite")),  # binding reads the store's dialect only
        audit=object(),
        settings=SimpleNamespace(hash_alg="sm3"),
    )
    assert rounds_for(ctx).hash_alg == "sm3"
