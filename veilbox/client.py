"""Typed Python client for the Veilbox HTTP API (v1), built on httpx.

    from veilbox.client import Client
    c = Client("http://127.0.0.1:8000", token)
    c.me()

Every non-2xx answer raises `ApiError` carrying the stable error ``code``, the public ``message`` and the
``details`` of the error body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

import httpx


class PrincipalInfo(TypedDict):
    id: str
    name: str
    role: str


class NewPrincipal(PrincipalInfo):
    token: str


class VerifyResult(TypedDict):
    ok: bool
    entries: int
    head: str | None
    first_bad_seq: int | None
    reason: str | None


class AuditPage(TypedDict):
    entries: list[dict[str, Any]]
    next: int


@dataclass
class ApiError(Exception):
    status: int
    code: str
    message: str
    details: list[Any]

    def __str__(self) -> str:
        return f"{self.code} ({self.status}): {self.message}"


class Client:
    def __init__(self, url: str, token: str | None = None, timeout: float = 120.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def with_token(self, token: str) -> Client:
        return Client(self.url, token, timeout=self._http.timeout.read or 120.0)

    # -- plumbing ----------------------------------------------------------------------------------------
    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        r = self._http.request(method, path, **kw)
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                raise ApiError(r.status_code, err["code"], err["message"], err.get("details", []))
            except (ValueError, KeyError, TypeError):
                raise ApiError(r.status_code, "INTERNAL", r.text[:200], []) from None
        return r

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self.request(method, path, **kw).json()

    # -- system & principals -------------------------------------------------------------------------------
    def health(self) -> dict[str, str]:
        return self._json("GET", "/health")

    def me(self) -> PrincipalInfo:
        return self._json("GET", "/v1/principals/me")

    def create_principal(self, name: str, role: str) -> NewPrincipal:
        return self._json("POST", "/v1/principals", json={"name": name, "role": role})

    def principals(self) -> list[PrincipalInfo]:
        return self._json("GET", "/v1/principals")

    # -- catalog -------------------------------------------------------------------------------------------
    def register_dataset(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/v1/datasets", json=spec)

    def datasets(self) -> list[dict[str, Any]]:
        return self._json("GET", "/v1/datasets")

    def dataset(self, name: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/datasets/{name}")

    def mock(self, name: str, rows: int = 100, seed: int = 0) -> dict[str, Any]:
        return self._json("GET", f"/v1/datasets/{name}/mock", params={"rows": rows, "seed": seed})

    # -- audit ---------------------------------------------------------------------------------------------
    def audit(self, since: int = 0, limit: int = 100, **filters: str) -> AuditPage:
        return self._json("GET", "/v1/audit", params={"since": since, "limit": limit, **filters})

    def audit_verify(self) -> VerifyResult:
        return self._json("GET", "/v1/audit/verify")

    def audit_export(self) -> bytes:
        return self.request("GET", "/v1/audit/export", params={"format": "parquet"}).content

    def audit_public_key(self) -> dict[str, str]:
        return self._json("GET", "/v1/audit/public-key")
