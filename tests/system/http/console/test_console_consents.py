"""The consent registry in the console over HTTP: the owner records a person's consent (the raw id never shown or
stored) and revokes it with a reason; the grantee reads it without any form; a form without the CSRF token is
refused."""

import datetime as dt

from .conftest import csrf_in, sign_in, token_of


def test_owner_records_and_revokes_grantee_reads(parties):
    svc = parties.service
    parties.owner.define_verification({"name": "income_at_least", "dataset": "tax_income",
                                       "subject_column": "person_id", "predicate": "monthly_income >= :threshold",
                                       "params": {"threshold": "number"}})
    owner, bank = (sign_in(svc.url, token_of(c)) for c in (parties.owner, parties.bank))
    try:
        page = owner.get("/console/consents")
        assert page.status_code == 200 and 'action="/console/consents"' in page.text
        until = (dt.date.today() + dt.timedelta(days=90)).isoformat()
        form = {"subjects": "P0001\nP0002", "grantee": "icbc-wuxi", "scenario": "consumer loan application",
                "products": "income_at_least", "valid_until": until}
        assert owner.post("/console/consents", data={**form, "csrf": "x"}).status_code == 403
        r = owner.post("/console/consents", data={**form, "csrf": csrf_in(page.text)})
        assert r.status_code == 303
        first, second = sorted(parties.owner.consents(), key=lambda c: c["id"])
        listed = owner.get("/console/consents").text
        assert first["id"] in listed and first["subject_hash"] in listed and "P0001" not in listed
        r = owner.post(f"/console/consents/{first['id']}/revoke",
                       data={"csrf": csrf_in(listed), "reason": "the person withdrew consent"})
        assert r.status_code == 303 and parties.owner.consent(first["id"])["state"] == "revoked"
        seen = bank.get("/console/consents").text  # the grantee reads its consents, with no form
        assert second["id"] in seen and 'action="/console/consents' not in seen
        actions = {e["action"] for e in parties.regulator.audit(limit=1000)["entries"]}
        assert {"console.consent.record", "console.consent.revoke"} <= actions
    finally:
        for web in (owner, bank):
            web.close()
