"""Filing (备案) over real HTTP: proposal → acceptance → review (a refusal back to the owner) → filing → activation →
the authority's suspension, a rectification order (整改) on every refusal, disabling a principal; each step audited
and visible to the regulator, and every role that may not act refused."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from gateway.services.agreements import set_filing
from veilbox.client import ApiError

COUNT = "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district"


def _err(fn, *a, **kw) -> ApiError:
    with pytest.raises(ApiError) as e:
        fn(*a, **kw)
    return e.value


def _code(fn, *a, **kw) -> str:
    return _err(fn, *a, **kw).code


def test_an_authority_takes_an_agreement_from_proposal_to_filing_to_suspension(parties):
    svc = parties.service
    set_filing(svc.ctx.engine, True)
    authority = svc.principal("data-bureau", "authority")
    owner, op, reg = parties.owner, parties.operator, parties.regulator

    ag = parties.agreement()  # proposed and accepted by the grantee
    aid, h = ag["id"], ag["document_hash"]
    assert ag["state"] == "accepted" and ag["filing_required"] is True and ag["filing_number"] is None
    assert _code(op.query, aid, COUNT, 0.1) == "AGREEMENT_INACTIVE"
    # only the authority files, and only what is under review
    assert _code(authority.file_agreement, aid, h) == "AGREEMENT_INACTIVE"
    assert _code(owner.activate_agreement, aid) == "AGREEMENT_INACTIVE"
    assert _code(op.submit_agreement, aid) == "POLICY_DENIED"
    assert owner.submit_agreement(aid)["state"] == "under_review"
    for who in (owner, op, reg):
        assert _code(who.file_agreement, aid, h) == "POLICY_DENIED"
    assert _code(authority.refuse_agreement, aid, h, []) == "INVALID_REQUEST"  # a refusal states its reasons
    assert _code(authority.file_agreement, aid, "sha256:" + "0" * 64) == "INVALID_REQUEST"  # another version

    back = authority.refuse_agreement(aid, h, ["the purpose does not name the lending product"])
    assert back["state"] == "returned"
    assert owner.submit_agreement(aid)["state"] == "under_review"
    filed = authority.file_agreement(aid, h, ["scope and purposes checked"])
    assert filed["state"] == "filed" and re.fullmatch(r"BA-\d{4}-\d{6}", filed["filing_number"])
    signoffs = reg.agreement_reviews(aid)
    assert [(s["verdict"], s["reviewer"], s["document_hash"]) for s in signoffs] == [
        ("refuse", "data-bureau", h), ("approve", "data-bureau", h)]
    assert signoffs[0]["reasons"] == ["the purpose does not name the lending product"]
    assert owner.agreement_reviews(aid) == signoffs

    assert owner.activate_agreement(aid)["state"] == "active"
    assert op.query(aid, COUNT, 0.1)["state"] == "released"

    # the authority's suspension: the owner cannot lift it, a regulator cannot act at all
    assert _code(reg.authority_suspend, aid, "x") == "POLICY_DENIED"
    assert _code(owner.authority_suspend, aid, "x") == "POLICY_DENIED"
    s = authority.authority_suspend(aid, "the consent notice is missing")
    assert s["state"] == "suspended" and s["suspended_by"] == "authority"
    assert _code(owner.resume_agreement, aid) == "AGREEMENT_INACTIVE"

    # a rectification order: on every refusal the grantee sees, until the authority closes it
    deadline = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).isoformat()
    assert _code(owner.issue_order, aid, "fix", deadline) == "POLICY_DENIED"
    assert _code(authority.issue_order, aid, "fix", "2027-01-01T00:00:00") == "INVALID_REQUEST"  # no zone: 422
    order = authority.issue_order(aid, "Publish the consent notice", deadline)
    assert order["open"] is True
    refused = _err(op.query, aid, COUNT, 0.1)
    assert refused.code == "AGREEMENT_INACTIVE"
    notices = [d for d in refused.details if d.get("reason") == "rectification.open"]
    assert len(notices) == 1 and "Publish the consent notice" in notices[0]["message"]
    assert [o["id"] for o in op.orders(aid)] == [order["id"]]
    assert authority.authority_resume(aid, "notice published")["state"] == "active"
    assert authority.close_order(order["id"], "done")["open"] is False
    assert _code(authority.close_order, order["id"]) == "INVALID_REQUEST"
    refused = _err(op.query, aid, COUNT, 100)  # still refused (budget), but no order listed any more
    assert not [d for d in refused.details if d.get("reason") == "rectification.open"]

    # disable and enable any principal (the admin's service): effective on the next call
    assert authority.authority_set_principal("risk-lab", True)["disabled"] is True
    assert _code(op.agreements) == "UNAUTHENTICATED"
    assert _code(reg.authority_set_principal, "risk-lab", False) == "POLICY_DENIED"
    assert authority.authority_set_principal("risk-lab", False)["disabled"] is False
    assert op.agreements()[0]["id"] == aid

    # every step audited, the regulator reads them all
    actions = [e["action"] for e in reg.audit(agreement_id=aid, limit=500)["entries"] if e["decision"] == "allow"]
    for name in ("agreement.accept", "agreement.submit", "agreement.refuse", "agreement.file", "agreement.activate",
                 "authority.suspend", "order.issue", "authority.resume", "order.close"):
        assert name in actions, name
    # the authority supervises: it reads the whole log, the grantee's own requests included
    seen = authority.audit(agreement_id=aid, limit=500)["entries"]
    assert {e["action"] for e in seen} >= {"agreement.accept", "agreement.file"}


def test_without_filing_acceptance_activates_and_the_authority_still_suspends(parties):
    authority = parties.service.principal("data-bureau", "authority")
    ag = parties.agreement()
    assert ag["state"] == "active" and ag["filing_required"] is False
    assert [a["id"] for a in authority.agreements()] == [ag["id"]]
    assert _code(parties.owner.submit_agreement, ag["id"]) == "AGREEMENT_INACTIVE"
    assert authority.authority_suspend(ag["id"], "inspection")["state"] == "suspended"
    assert _code(authority.authority_suspend, ag["id"], "again") == "AGREEMENT_INACTIVE"
