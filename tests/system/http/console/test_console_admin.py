"""The admin's console pages over HTTP: principals (create with the token shown once, disable and enable, a new
token, an expiry from a date picker), the negative list and the service's health; other roles are refused."""

import re

import pytest

from veilbox.client import ApiError

from .conftest import csrf_in, sign_in, token_of

TOKEN = re.compile(r'id="token-value">([^<]+)<')


def test_admin_manages_principals_negative_list_and_sees_health(service):
    web = sign_in(service.url, token_of(service.admin))
    bank_client = service.principal("icbc-wuxi", "bank")
    bank_web = sign_in(service.url, token_of(bank_client))
    try:
        assert bank_web.get("/console/admin/principals").status_code == 403
        page = web.get("/console/admin/principals")
        assert page.status_code == 200 and 'id="principal-icbc-wuxi"' in page.text and 'type="date"' in page.text
        csrf = csrf_in(page.text)

        created = web.post("/console/admin/principals", data={"csrf": csrf, "name": "city-tax", "role": "owner"})
        token = TOKEN.search(created.text).group(1)
        assert service.client(token).me()["role"] == "owner"
        assert token not in web.get("/console/admin/principals").text  # shown once

        r = web.post("/console/admin/principals/icbc-wuxi/disable", data={"csrf": csrf})
        assert r.status_code == 303
        with pytest.raises(ApiError) as ei:
            bank_client.me()
        assert ei.value.code == "UNAUTHENTICATED"
        assert bank_web.get("/console/").status_code == 401  # its console session ended with it
        assert web.post("/console/admin/principals/icbc-wuxi/enable", data={"csrf": csrf}).status_code == 303
        assert bank_client.me()["name"] == "icbc-wuxi"

        rotated = web.post("/console/admin/principals/icbc-wuxi/rotate", data={"csrf": csrf})
        new = TOKEN.search(rotated.text).group(1)
        with pytest.raises(ApiError):
            bank_client.me()
        assert service.client(new).me()["name"] == "icbc-wuxi"

        r = web.post("/console/admin/principals/icbc-wuxi/expiry", data={"csrf": csrf, "expires_on": "2001-02-03"})
        assert r.status_code == 303
        with pytest.raises(ApiError) as ei:
            service.client(new).me()
        assert ei.value.details == [{"reason": "token.expired"}]
        assert web.post("/console/admin/principals/icbc-wuxi/expiry",
                        data={"csrf": csrf, "expires_on": "soon"}).status_code == 422

        r = web.post("/console/admin/negative-list", data={"csrf": csrf, "kind": "purpose", "value": "marketing"})
        assert r.status_code == 303
        listed = web.get("/console/admin/negative-list").text
        assert "marketing" in listed
        entry_id = service.admin._json("GET", "/v1/negative-list")[0]["id"]
        assert web.post(f"/console/admin/negative-list/{entry_id}/remove", data={"csrf": csrf}).status_code == 303
        assert "marketing" not in web.get("/console/admin/negative-list").text

        health = web.get("/console/admin/health?verify=1").text
        assert 'id="checks"' in health and 'id="chain-status"' in health and "Chain OK" in health

        e = service.ctx.audit.entries(0, 1000)[0]
        actions = [x["action"] for x in e]
        for action in ("console.admin.principal.disable", "console.admin.principal.enable",
                       "console.admin.principal.rotate", "console.admin.principal.expiry",
                       "console.admin.principal.create", "console.admin.negative.add"):
            assert action in actions, action
    finally:
        web.close()
        bank_web.close()
