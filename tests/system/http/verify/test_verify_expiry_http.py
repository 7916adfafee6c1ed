"""A plain check on an agreement that has expired: refused, and the expiry recorded once, by the first refused
check, before the refusal's own entry; an answered check writes no expiry transaction (it is recorded only when
a check is refused, `gateway.services.verification._authorize`)."""

from __future__ import annotations

import datetime as dt

import pytest

from policies import _clock
from veilbox.client import ApiError


def _iso(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def test_the_first_refused_check_records_the_expiry_once(world, monkeypatch) -> None:
    until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    ag = world.parties.agreement("icbc-wuxi", valid_until=_iso(until),
                                 quotas={"calls_per_day": 100, "verify_per_subject_per_day": 3})
    check = {"name": "income_at_least", "agreement_id": ag["id"], "params": {"threshold": 8000}}
    assert world.bank.check(check["name"], ag["id"], "P0000001", check["params"], consent_ref="c/1")["receipt"]
    regulator = world.parties.regulator
    assert regulator.audit(action="agreement.expire", agreement_id=ag["id"])["entries"] == []

    # the service's clock (policies._clock, which every state check reads) moves two hours on
    monkeypatch.setattr(_clock, "utcnow", lambda: dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))
    for i in range(3):
        with pytest.raises(ApiError) as e:
            world.bank.check(check["name"], ag["id"], "P0000002", check["params"], consent_ref=f"c/{i + 2}")
        assert e.value.code == "AGREEMENT_INACTIVE"
    expiries = regulator.audit(action="agreement.expire", agreement_id=ag["id"])["entries"]
    assert len(expiries) == 1
    refused = [x for x in regulator.audit(action="verify.check", agreement_id=ag["id"], limit=100)["entries"]
               if x["decision"] == "deny"]
    assert len(refused) == 3 and expiries[0]["seq"] < min(x["seq"] for x in refused)
    assert world.bank.agreement(ag["id"])["state"] == "expired"
