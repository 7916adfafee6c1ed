"""The data authority's console pages over HTTP (filing 备案): the owner submits from its agreement page, the
authority finds it in the review queue, reads the document and its full hash, names a reviewer (专家委员会) from
the review page (the reviewer's page shows its sign-off pending, then its approval; the authority's page shows it
approved), refuses with reasons (back to the owner) and then files it (a number issued: the re-submitted same
version keeps the approval); the owner activates it; the authority suspends it only through the
confirmation page with a reason, issues a rectification order (整改) the grantee sees on its agreement page, closes
it, resumes, and disables and enables a principal. Each change is audited; other roles and forms without the
page's CSRF token are refused."""

from __future__ import annotations

import datetime as dt
import re

from gateway.services.agreements import set_filing

from .conftest import csrf_in, sign_in, token_of


def test_authority_reviews_files_suspends_and_orders_in_the_console(parties):
    svc = parties.service
    set_filing(svc.ctx.engine, True)
    authority = svc.principal("data-bureau", "authority")
    ag = parties.agreement()
    aid, h = ag["id"], ag["document_hash"]
    assert ag["state"] == "accepted"
    owner, op, boss = (sign_in(svc.url, token_of(c)) for c in (parties.owner, parties.operator, authority))
    try:
        # the owner submits from its agreement page (the button shows only where the state allows)
        page = owner.get(f"/console/agreements/{aid}").text
        assert f'action="/console/agreements/{aid}/submit"' in page and "/activate" not in page
        assert owner.post(f"/console/agreements/{aid}/submit", data={"csrf": csrf_in(page)}).status_code == 303
        # only the authority has the pages
        assert op.get("/console/authority").status_code == 403
        queue = boss.get("/console/authority")
        assert queue.status_code == 200 and f"/console/authority/agreements/{aid}" in queue.text
        # the authority supervises: it reads the whole audit log, the owner's submission included
        log = boss.get("/console/audit")
        assert log.status_code == 200 and 'href="/console/audit"' in log.text and "agreement.submit" in log.text
        review = boss.get(f"/console/authority/agreements/{aid}").text
        assert h in review and 'name="verdict" value="file"' in review
        token = csrf_in(review)

        # the authority names a reviewer (专家委员会) from the review page; it signs off from its own page
        experts = svc.client(svc.admin.create_principal("expert-panel", "reviewer", "expert_committee")["token"])
        review = boss.get(f"/console/authority/agreements/{aid}").text
        assert 'name="named:expert-panel"' in review and 'id="reviewer-expert-panel"' not in review
        names = f"/console/authority/agreements/{aid}/reviewers"
        assert boss.post(names, data={"csrf": "x", "named:expert-panel": "yes"}).status_code == 403
        assert boss.post(names, data={"csrf": token, "named:risk-lab": "yes"}).status_code == 422  # not a reviewer
        assert boss.post(names, data={"csrf": token, "named:expert-panel": "yes"}).status_code == 303
        assert parties.owner.agreement(aid)["reviewers"] == {"expert-panel": "expert_committee"}
        review = boss.get(f"/console/authority/agreements/{aid}").text
        assert 'id="reviewer-expert-panel" data-state="pending"' in review
        panel = sign_in(svc.url, token_of(experts))
        try:
            mine = panel.get("/console/review").text
            assert f'id="mine-{aid}" data-state="pending"' in mine
            assert panel.post(f"/console/review/{aid}", data={"csrf": csrf_in(mine), "verdict": "approve",
                                                             "document_hash": h, "reasons": "measures adequate"}
                              ).status_code == 303
            mine = panel.get("/console/review").text
            assert f'id="mine-{aid}" data-state="approve"' in mine and "measures adequate" in mine
        finally:
            panel.close()
        review = boss.get(f"/console/authority/agreements/{aid}").text
        assert 'id="reviewer-expert-panel" data-state="approve"' in review and "measures adequate" in review
        url = f"/console/authority/agreements/{aid}/signoff"
        assert boss.post(url, data={"csrf": "x", "verdict": "file", "document_hash": h,
                                    "reasons": "ok"}).status_code == 403
        assert boss.post(url, data={"csrf": token, "verdict": "refuse", "document_hash": h,
                                    "reasons": " "}).status_code == 422
        stale = boss.post(url, data={"csrf": token, "verdict": "file", "document_hash": "sha256:" + "0" * 64,
                                     "reasons": "checked"})
        assert stale.status_code == 422
        r = boss.post(url, data={"csrf": token, "verdict": "refuse", "document_hash": h,
                                 "reasons": "the purpose does not name the lending product"})
        assert r.status_code == 303 and parties.owner.agreement(aid)["state"] == "returned"
        page = owner.get(f"/console/agreements/{aid}").text
        assert owner.post(f"/console/agreements/{aid}/submit", data={"csrf": csrf_in(page)}).status_code == 303
        assert boss.post(url, data={"csrf": token, "verdict": "file", "document_hash": h,
                                    "reasons": "scope and purposes checked"}).status_code == 303
        filed = parties.owner.agreement(aid)
        assert filed["state"] == "filed" and re.fullmatch(r"BA-\d{4}-\d{6}", filed["filing_number"])
        review = boss.get(f"/console/authority/agreements/{aid}").text
        assert "the purpose does not name the lending product" in review and filed["filing_number"] in review
        assert 'name="verdict"' not in review  # no sign-off form once filed
        # the owner activates from its page
        page = owner.get(f"/console/agreements/{aid}").text
        assert owner.post(f"/console/agreements/{aid}/activate", data={"csrf": csrf_in(page)}).status_code == 303
        assert parties.owner.agreement(aid)["state"] == "active"

        # suspension: only from the confirmation page, with a reason
        sus = f"/console/authority/agreements/{aid}/suspend"
        assert boss.post(sus, data={"csrf": token, "reason": "x"}).status_code == 422
        confirm = boss.get(f"/console/authority/agreements/{aid}/confirm/suspend")
        assert confirm.status_code == 200 and 'name="confirmed" value="yes"' in confirm.text
        assert boss.post(sus, data={"csrf": token, "confirmed": "yes", "reason": ""}).status_code == 422
        r = boss.post(sus, data={"csrf": token, "confirmed": "yes", "reason": "the consent notice is missing"})
        assert r.status_code == 303
        s = parties.owner.agreement(aid)
        assert s["state"] == "suspended" and s["suspended_by"] == "authority"
        assert f"/console/agreements/{aid}/resume" not in owner.get(f"/console/agreements/{aid}").text

        # a rectification order: the grantee sees it on its agreement page until the authority closes it
        deadline = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).date().isoformat()
        r = boss.post(f"/console/authority/agreements/{aid}/orders",
                      data={"csrf": token, "text": "Publish the consent notice", "deadline": deadline})
        assert r.status_code == 303
        assert boss.post(f"/console/authority/agreements/{aid}/orders",
                         data={"csrf": token, "text": "x", "deadline": "soon"}).status_code == 422
        [order] = parties.operator.orders(aid)
        grantee_page = op.get(f"/console/agreements/{aid}").text
        assert 'id="orders"' in grantee_page and "Publish the consent notice" in grantee_page
        assert deadline in grantee_page
        r = boss.post(f"/console/authority/orders/{order['id']}/close", data={"csrf": token, "note": "published"})
        assert r.status_code == 303
        assert 'id="orders"' not in op.get(f"/console/agreements/{aid}").text
        r = boss.post(f"/console/authority/agreements/{aid}/resume",
                      data={"csrf": token, "confirmed": "yes", "reason": "notice published"})
        assert r.status_code == 303 and parties.owner.agreement(aid)["state"] == "active"

        # disable a principal: its console session ends at once; enable it again
        assert boss.post("/console/authority/principals/risk-lab/disable", data={"csrf": token}).status_code == 303
        assert op.get("/console/").status_code == 401
        assert boss.post("/console/authority/principals/risk-lab/enable", data={"csrf": token}).status_code == 303
        assert parties.operator.agreements()[0]["id"] == aid

        actions = {e["action"] for e in parties.regulator.audit(limit=1000)["entries"] if e["decision"] == "allow"}
        assert {"console.agreement.submit", "console.authority.reviewers", "console.review.approve",
                "console.authority.refuse", "console.authority.file",
                "console.agreement.activate", "console.authority.suspend", "console.authority.order.issue",
                "console.authority.order.close", "console.authority.resume", "console.authority.principal.disable",
                "console.authority.principal.enable"} <= actions
    finally:
        for web in (owner, op, boss):
            web.close()
