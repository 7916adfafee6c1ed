"""Named reviewers (专家委员会, 网信) over real HTTP: the admin creates them with their kind; the authority names them
on an agreement under review; filing waits for each one's approval of the current version; a reviewer's refusal
returns the agreement to its owner with the reasons; a reviewer sees only what it was named on, while under
review, and can do nothing else; its console page signs off too."""

from __future__ import annotations

import pytest

from gateway.services.agreements import set_filing
from tests.system.http.console.conftest import csrf_in, sign_in, token_of
from veilbox.client import ApiError


def _err(fn, *a, **kw) -> ApiError:
    with pytest.raises(ApiError) as e:
        fn(*a, **kw)
    return e.value


def test_named_reviewers_sign_off_before_the_authority_files(parties):
    svc = parties.service
    set_filing(svc.ctx.engine, True)
    admin = svc.admin
    assert _err(admin.create_principal, "nobody-kind", "reviewer").code == "INVALID_REQUEST"
    assert _err(admin.create_principal, "owner-kind", "owner", "cyberspace").code == "INVALID_REQUEST"
    made = admin.create_principal("expert-panel", "reviewer", "expert_committee")
    assert made["reviewer_kind"] == "expert_committee"
    experts = svc.client(made["token"])
    cac = svc.client(admin.create_principal("cac-wuxi", "reviewer", "cyberspace")["token"])
    authority = svc.principal("data-bureau", "authority")
    owner, op = parties.owner, parties.operator

    ag = parties.agreement()
    aid, h = ag["id"], ag["document_hash"]
    owner.submit_agreement(aid)
    assert _err(experts.agreement, aid).code == "NOT_FOUND_OR_FORBIDDEN"  # not named: a stranger
    assert experts.agreements() == []
    assert _err(authority.require_reviewers, aid, ["risk-lab"]).details[0]["reason"] == "reviewer.unknown"
    assert _err(parties.regulator.require_reviewers, aid, ["cac-wuxi"]).code == "POLICY_DENIED"
    named = authority.require_reviewers(aid, ["expert-panel", "cac-wuxi"])
    assert named["reviewers"] == {"cac-wuxi": "cyberspace", "expert-panel": "expert_committee"}

    assert [a["id"] for a in experts.agreements()] == [aid] and experts.agreement(aid)["document_hash"] == h
    assert _err(experts.file_agreement, aid, h).code == "POLICY_DENIED"  # a reviewer files nothing
    assert _err(experts.budget, aid).code == "POLICY_DENIED"
    assert _err(op.review_agreement, aid, "approve", h).code == "POLICY_DENIED"
    pending = _err(authority.file_agreement, aid, h)
    assert pending.code == "POLICY_DENIED"
    assert {(d["reason"], d["reviewer"]) for d in pending.details} == {
        ("review.pending", "cac-wuxi"), ("review.pending", "expert-panel")}

    assert _err(experts.review_agreement, aid, "approve", "sha256:" + "0" * 64).code == "INVALID_REQUEST"
    assert experts.review_agreement(aid, "approve", h, ["measures adequate"])["state"] == "under_review"
    assert [d["reviewer"] for d in _err(authority.file_agreement, aid, h).details] == ["cac-wuxi"]
    assert _err(cac.review_agreement, aid, "refuse", h, []).code == "INVALID_REQUEST"  # a refusal states reasons
    assert cac.review_agreement(aid, "refuse", h, ["no data-export assessment"])["state"] == "returned"
    assert _err(cac.agreement, aid).code == "NOT_FOUND_OR_FORBIDDEN"  # no longer under review
    last = owner.agreement_reviews(aid)[-1]
    assert (last["reviewer"], last["role"], last["reviewer_kind"], last["verdict"], last["reasons"]) == (
        "cac-wuxi", "reviewer", "cyberspace", "refuse", ["no data-export assessment"])

    owner.submit_agreement(aid)
    web = sign_in(svc.url, token_of(cac))  # the reviewer's console page: the agreement, its hash, the sign-off form
    try:
        page = web.get("/console/review").text
        assert h in page and f'action="/console/review/{aid}"' in page
        assert web.get("/console/authority").status_code == 403
        posted = web.post(f"/console/review/{aid}", data={"csrf": csrf_in(page), "verdict": "approve",
                                                         "document_hash": h, "reasons": "assessment received"})
        assert posted.status_code == 303
    finally:
        web.close()
    assert owner.agreement_reviews(aid)[-1]["reasons"] == ["assessment received"]
    filed = authority.file_agreement(aid, h)
    assert filed["state"] == "filed" and filed["filing_number"].startswith("BA-")
    assert experts.agreements() == []
    web = sign_in(svc.url, token_of(experts))
    try:
        assert "No agreement awaits your review" in web.get("/console/review").text
    finally:
        web.close()
