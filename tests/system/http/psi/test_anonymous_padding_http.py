"""The anonymous check's latency channel over real HTTP (issue 12): a present subject's answer, an absent
subject's answer and a refusal all leave through the latency padding (`gateway.latency`, unit-tested in
tests/unit/gateway/test_latency.py; no timing asserted)."""

from __future__ import annotations

import base64

from mpc import psi
from veilbox import bank as bank_sdk


def test_anonymous_answers_and_refusals_are_padded_to_the_latency_bucket(psi_world, monkeypatch):
    from gateway import latency

    calls: list[int] = []

    async def spy(started: float, bucket_ms: int) -> None:
        calls.append(bucket_ms)

    monkeypatch.setattr(latency, "pad", spy)
    monkeypatch.setitem(psi_world.parties.service.settings.__dict__, "latency_bucket_ms", 50)
    w, ag = psi_world, psi_world.agreement["id"]
    present = bank_sdk.check_anonymous(w.bank, "income_at_least", ag, sorted(w.rows)[0], {"threshold": 1},
                                       consent_ref="c")
    absent = bank_sdk.check_anonymous(w.bank, "income_at_least", ag, "NOBODY-1", {"threshold": 1},
                                      consent_ref="c")
    assert present.present and not absent.present
    assert calls == [50, 50]  # one padded request each (the GET of the public bucket layout is not a check)
    info = w.bank._http.get("/v1/verifications/income_at_least/anonymous").json()
    element = base64.b64encode(psi.AnonClient().request("P1")).decode()
    r = w.bank._http.post("/v1/verifications/income_at_least/check-anonymous",
                          json={"agreement_id": ag, "bucket_bits": info["bucket_bits"], "bucket": -1,
                                "element": element, "params": {"threshold": 1}, "consent_ref": "c"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "INVALID_REQUEST"
    assert calls == [50, 50, 50]
