"""Complaints in the console over HTTP: the owner files a person's objection (the raw id never shown or stored),
the regulator reads the list without any form, the data authority investigates and resolves it with reasons, and
a move without the CSRF token is refused."""

from .conftest import csrf_in, sign_in, token_of


def test_owner_files_authority_decides_regulator_reads(parties):
    svc = parties.service
    authority = svc.principal("data-authority", "authority")
    owner, regulator, boss = (sign_in(svc.url, token_of(c)) for c in (parties.owner, parties.regulator, authority))
    try:
        page = owner.get("/console/complaints")
        assert page.status_code == 200 and 'action="/console/complaints"' in page.text and 'name="subject"' in page.text
        r = owner.post("/console/complaints", data={"csrf": csrf_in(page.text), "kind": "objection",
                                                     "target_kind": "subject", "subject": "P0001",
                                                     "text": "the person objects to credit checks"})
        assert r.status_code == 303
        [c] = parties.owner.complaints()
        assert c["suspends_subject"] and c["on_behalf"]
        listed = owner.get("/console/complaints").text
        assert c["id"] in listed and "P0001" not in listed
        # the regulator reads it, with no form to file or move
        seen = regulator.get("/console/complaints?state=open").text
        assert c["id"] in seen and 'method="post" action="/console/complaints' not in seen
        # a move without the page's token is refused; the authority investigates, then resolves with reasons
        assert boss.post(f"/console/complaints/{c['id']}/investigate", data={"csrf": "x"}).status_code == 403
        token = csrf_in(boss.get("/console/complaints").text)
        assert boss.post(f"/console/complaints/{c['id']}/investigate", data={"csrf": token}).status_code == 303
        r = boss.post(f"/console/complaints/{c['id']}/resolve",
                      data={"csrf": token, "reasons": "checks of this person stopped\nthe bank was told"})
        assert r.status_code == 303
        done = parties.regulator.complaint(c["id"])
        assert done["state"] == "resolved" and done["history"][-1]["reasons"] == [
            "checks of this person stopped", "the bank was told"]
        actions = [e["action"] for e in parties.regulator.audit(limit=1000)["entries"]]
        assert {"console.complaint.file", "console.complaint.investigate", "console.complaint.resolve"} <= set(actions)
    finally:
        for web in (owner, regulator, boss):
            web.close()
