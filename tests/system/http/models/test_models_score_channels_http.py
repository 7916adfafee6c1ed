"""Encrypted scoring's observable channels over real HTTP (issue 12): answers and refusals leave through the latency
padding, and a failed HE evaluation gives back the answers it counted against the quota and is audited."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from catalog import models
from gateway.services import scoring as score_route
from mpc.errors import InvalidCiphertext
from mpc.he import client as he
from veilbox import bank as bank_sdk
from veilbox.client import ApiError

FEATURES = ["age", "industry", "district", "monthly_income", "social_insurance_months"]


@pytest.fixture(scope="module")
def applicants(city_data) -> list[dict]:
    return pq.read_table(city_data.tax_income, columns=FEATURES).slice(0, 4).to_pylist()


def _code(call, *a, **kw) -> tuple[str, int]:
    with pytest.raises(ApiError) as e:
        call(*a, **kw)
    return e.value.code, e.value.status


def _usage(world, agreement_id: str) -> tuple[int, int]:
    engine = world.parties.service.ctx.engine
    return (models.score_usage(engine, agreement_id, world.model.id, "decision"),
            models.score_usage(engine, agreement_id, world.model.id, "logit"))


def _score_entries(world) -> list[dict]:
    out = world.parties.regulator.audit(limit=1000, action="model.score")["entries"]
    for e in out:
        if isinstance(e["details"], str):
            e["details"] = json.loads(e["details"])
    return out


def test_score_answers_and_refusals_are_padded_to_the_latency_bucket(sworld, applicants, columns_keys, monkeypatch):
    """An answer, a refused ciphertext and an unknown model all pass through the padding (`gateway.latency`,
    unit-tested in tests/unit/gateway/test_latency.py; no timing asserted)."""
    from gateway import latency

    calls: list[int] = []

    async def spy(started: float, bucket_ms: int) -> None:
        calls.append(bucket_ms)

    monkeypatch.setattr(latency, "pad", spy)
    monkeypatch.setitem(sworld.parties.service.settings.__dict__, "latency_bucket_ms", 50)
    p, ag, mid = sworld.parties, sworld.agreement["id"], sworld.model.id
    x = bank_sdk.encode_applicants(sworld.model.card, applicants[:2])
    good = he.encrypt_columns(columns_keys.context, x)
    cut = he.encrypt_cutoffs(columns_keys.context, np.zeros(2))
    assert len(p.bank.score(mid, columns_keys.public, good, "columns", ag, cutoff=cut)["ciphertexts"]) == 1
    assert _code(p.bank.score, mid, columns_keys.public, good, "columns", ag, cutoff="AAAA" * 10)[1] == 422
    assert _code(p.bank.score, "no-such-model", columns_keys.public, good, "columns", ag, cutoff=cut)[1] == 404
    assert calls == [50, 50, 50]


def test_a_failed_evaluation_gives_back_what_it_counted_and_is_audited(sworld, applicants, columns_keys,
                                                                       monkeypatch):
    """The evaluation the route calls fails after the answers were counted (a seam in this process: the real
    `decide_columns` replaced by one that refuses): the refusal is CIPHERTEXT_INVALID, the decision and logit
    counters are where they were before the request, the refusal is audited, and the next request is answered."""
    p, ag, mid = sworld.parties, sworld.agreement["id"], sworld.model.id
    x = bank_sdk.encode_applicants(sworld.model.card, applicants[:2])
    good = he.encrypt_columns(columns_keys.context, x)
    cut = he.encrypt_cutoffs(columns_keys.context, np.zeros(2))
    first = p.bank.score(mid, columns_keys.public, good, "columns", ag, cutoff=cut)
    before = _usage(sworld, ag)
    assert before == (first["scores_used"], 0) and before[0] > 0
    real = score_route.decide_columns

    def failing(*a, **kw):
        raise InvalidCiphertext("evaluation failed")

    monkeypatch.setattr(score_route, "decide_columns", failing)
    assert _code(p.bank.score, mid, columns_keys.public, good, "columns", ag, cutoff=cut) == ("CIPHERTEXT_INVALID",
                                                                                               422)
    assert _usage(sworld, ag) == before  # the counted answers were given back
    entries = _score_entries(sworld)
    assert sorted(e["decision"] for e in entries) == ["allow", "deny"]
    denied = next(e for e in entries if e["decision"] == "deny")
    assert denied["code"] == "CIPHERTEXT_INVALID" and denied["agreement_id"] == ag
    assert denied["output_digest"] is None and denied["details"]["scores_exposed"] == first["scores_counted"]
    monkeypatch.setattr(score_route, "decide_columns", real)
    again = p.bank.score(mid, columns_keys.public, good, "columns", ag, cutoff=cut)
    assert again["scores_used"] == before[0] + first["scores_counted"]
