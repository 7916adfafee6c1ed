"""Console fixtures: signed-in HTTP sessions per role over the real gateway, and a job waiting for the owner."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
COUNT_BY_DISTRICT = "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district"


def token_of(client: Any) -> str:
    return str(client._http.headers["Authorization"].split()[1])


def csrf_in(html: str) -> str:
    m = CSRF.search(html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def sign_in(url: str, token: str) -> httpx.Client:
    """An HTTP client holding a console session for ``token`` (as a browser would after signing in)."""
    web = httpx.Client(base_url=url, follow_redirects=False, timeout=60)
    page = web.get("/console/login")
    r = web.post("/console/login", data={"token": token, "csrf": csrf_in(page.text)})
    assert r.status_code == 303, r.text
    return web


@dataclass
class Console:
    parties: Any
    url: str
    agreement: dict[str, Any]
    job_id: str
    sessions: list[httpx.Client] = field(default_factory=list)  # closed after the test

    token_of = staticmethod(token_of)
    csrf_in = staticmethod(csrf_in)
    sign_in = staticmethod(sign_in)

    def web(self, who: str) -> httpx.Client:
        web = sign_in(self.url, token_of(getattr(self.parties, who)))
        self.sessions.append(web)
        return web

    def post(self, web: httpx.Client, path: str, page: str, data: dict[str, str] | None = None) -> httpx.Response:
        """Post a form the way the page does: with the CSRF token the page carries."""
        token = csrf_in(web.get(page).text)
        return web.post(path, data={"csrf": token, **(data or {})})


@pytest.fixture
def console(parties: Any) -> Iterator[Console]:
    ag = parties.agreement(approval="owner_each_job", title="District statistics <b>2026</b>")
    pending = parties.operator.query(ag["id"], COUNT_BY_DISTRICT, 0.5)
    assert pending["state"] == "pending_approval"
    console = Console(parties, parties.service.url, ag, pending["job_id"])
    yield console
    for web in console.sessions:
        web.close()
