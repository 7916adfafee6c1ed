"""Fail closed, never 500: what the route fuzzer (test_fuzz_routes.py) found, pinned as plain tests.

Every refusal here is the documented error body with a catalog code and an audit entry naming the route; an
exception nobody expected is ``INTERNAL`` with the generic message, whether it is raised in a handler, in a
dependency or while the body is parsed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends
from pydantic import BaseModel, field_validator

from gateway import strict_json
from gateway.server import BackgroundServer

SECRET = "Catalog Error: table tax_income at /secret/path has 12345 rows"
GENERIC_500 = {"error": {"code": "INTERNAL", "message": "internal error", "details": []}}


def last_entry(service: Any) -> dict[str, Any]:
    return service.ctx.audit.entries(0, 100_000)[0][-1]


def token_of(client: Any) -> str:
    return str(client._http.headers["Authorization"]).split()[1]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- unexpected exceptions: handler, dependency, body parsing ----------------------------------------------------


def _failing() -> None:
    raise RuntimeError(SECRET)


class Exploding(BaseModel):
    x: int

    @field_validator("x")
    @classmethod
    def _boom(cls, v: int) -> int:
        raise RuntimeError(SECRET)  # not a ValueError: pydantic lets it through


@pytest.fixture
def boom_server(service: Any) -> Iterator[str]:
    """A second real HTTP server on the service's context, with routes that fail in every place."""
    router = APIRouter()

    @router.get("/v1/boom/handler", name="test.boom_handler")
    def in_handler() -> None:
        _failing()

    @router.get("/v1/boom/dependency", name="test.boom_dependency")
    def in_dependency(_: Annotated[None, Depends(_failing)]) -> None:
        return None

    @router.post("/v1/boom/body", name="test.boom_body")
    def in_body(body: Exploding) -> None:
        return None

    srv = BackgroundServer(service.ctx)
    srv.app.include_router(router)
    with srv:
        yield srv.url


@pytest.mark.parametrize(("method", "path", "action"), [
    ("GET", "/v1/boom/handler", "test.boom_handler"),
    ("GET", "/v1/boom/dependency", "test.boom_dependency"),
    ("POST", "/v1/boom/body", "test.boom_body"),
])
def test_unexpected_exceptions_are_internal_scrubbed_and_audited(service, boom_server, method, path, action):
    r = httpx.request(method, boom_server + path, json={"x": 1} if method == "POST" else None, timeout=30)
    assert r.status_code == 500
    assert r.json() == GENERIC_500
    assert SECRET not in r.text
    last = last_entry(service)
    assert (last["action"], last["decision"], last["code"]) == (action, "error", "INTERNAL")
    assert SECRET not in json.dumps(last)


# --- bodies: strict JSON ----------------------------------------------------------------------------------------

LOOSE_BODIES = {
    "invalid JSON": b'{"name": "x", "role": ',
    "invalid UTF-8": b'{"name": "\xc3\x28", "role": "bank"}',
    "NaN token": b'{"name": "nan-bank", "role": NaN}',
    "Infinity token": b'{"name": "inf-bank", "role": Infinity}',
    "duplicate keys": b'{"name": "dup-bank", "role": "bank", "role": "admin"}',
    "1e999": b'{"name": "big-bank", "role": "bank", "x": 1e999}',
    "1e-400": b'{"name": "tiny-bank", "role": "bank", "x": 1e-400}',
    "int beyond 64 bits": b'{"name": "int-bank", "role": "bank", "x": 18446744073709551616}',
    "lone surrogate": b'{"name": "\\ud800-bank", "role": "bank"}',
    "deep nesting": b'{"name": "deep-bank", "role": "bank", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "nesting past the limit": b'{"x": ' + b"[" * strict_json.MAX_DEPTH + b"]" * strict_json.MAX_DEPTH + b"}",
    "byte-order mark": b'\xef\xbb\xbf{"name": "bom-bank", "role": "bank"}',
}


@pytest.mark.parametrize("body", LOOSE_BODIES.values(), ids=LOOSE_BODIES.keys())
def test_loose_json_bodies_are_invalid_request_and_audited(service, body):
    token = token_of(service.admin)
    before = len(service.admin.principals())
    r = httpx.post(service.url + "/v1/principals", content=body,
                   headers={**auth(token), "Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "INVALID_REQUEST"
    last = last_entry(service)
    # refused before authentication, as any body that cannot be parsed: the entry names the route, not the caller
    assert (last["action"], last["decision"], last["code"]) == ("principal.create", "deny", "INVALID_REQUEST")
    assert len(service.admin.principals()) == before


def test_strict_json_keeps_what_json_means():
    assert strict_json.loads(b'{"a": [1, 2.5, 5e-324, -0.0, "\\ud83d\\udca5"], "b": {"c": null}}') == {
        "a": [1, 2.5, 5e-324, -0.0, "\U0001f4a5"], "b": {"c": None}}
    assert strict_json.loads(b"9223372036854775807") == 2**63 - 1
    assert strict_json.loads(b"0.0e5") == 0.0
    depth_ok = b"[" * strict_json.MAX_DEPTH + b"]" * strict_json.MAX_DEPTH
    assert strict_json.loads(depth_ok) is not None


def test_refusals_name_the_rule_never_the_value(service):
    token = token_of(service.admin)
    r = httpx.post(service.url + "/v1/principals", content=b'{"name": "secret-value-42", "name": "x"}',
                   headers={**auth(token), "Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 422 and "secret-value-42" not in r.text
    assert r.json()["error"]["details"] == [{"loc": ["body"], "problem": "an object repeats a key"}]


# --- parameters: integers fit in 64 bits --------------------------------------------------------------------------


def test_integer_parameters_beyond_64_bits_are_invalid_request(parties):
    svc, reg = parties.service, parties.regulator
    token = token_of(reg)
    for since in (str(2**63), "2756961352150533799936", "1_000_000_000_000_000_000_000"):
        r = httpx.get(svc.url + "/v1/audit", params={"since": since}, headers=auth(token), timeout=30)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["details"] == [{"loc": ["query", "since"],
                                                 "problem": "outside the signed 64-bit integer range"}]
        last = last_entry(svc)
        assert (last["action"], last["decision"], last["code"]) == ("audit.list", "deny", "INVALID_REQUEST")
    r = httpx.get(svc.url + "/v1/audit", params={"since": str(2**63 - 1)}, headers=auth(token), timeout=30)
    assert r.status_code == 200 and r.json()["entries"] == []
    r = httpx.get(svc.url + "/v1/datasets/tax_income/mock", params={"seed": "9" * 30},
                  headers=auth(token), timeout=30)
    assert r.status_code == 422 and r.json()["error"]["code"] == "INVALID_REQUEST"


# --- datasets: a NUL byte in the source ------------------------------------------------------------------------


def test_dataset_source_with_nul_byte_is_invalid_request(parties):
    svc, owner = parties.service, parties.owner
    spec = {**parties.tax_spec, "name": "tax_nul", "source": parties.tax_spec["source"] + "\x00.csv"}
    token = token_of(owner)
    r = httpx.post(svc.url + "/v1/datasets", json=spec, headers=auth(token), timeout=30)
    assert r.status_code == 422 and r.json()["error"]["code"] == "INVALID_REQUEST", r.text
    last = last_entry(svc)
    assert (last["action"], last["decision"], last["code"]) == ("dataset.register", "deny", "INVALID_REQUEST")
    assert [d["name"] for d in owner.datasets()] == ["tax_income"]


# --- money-like fields: numbers are numbers, and exact amounts stay readable ----------------------------------------


@pytest.mark.parametrize("mutate", [
    lambda d: d["budget"].update(epsilon=True),
    lambda d: d["budget"].update(delta=False),
    lambda d: d.update(price={"per_call": True, "per_job": 0, "per_epsilon": 0, "currency": "CNY"}),
    lambda d: d["budget"].update(epsilon=5e-324),
    lambda d: d["budget"].update(epsilon="1e400"),
    lambda d: d["budget"].update(epsilon="1e-400"),
    lambda d: d.update(price={"per_call": 0, "per_job": "1" * 41, "per_epsilon": 0, "currency": "CNY"}),
    lambda d: d.update(quotas={"calls_per_day": True}),
    lambda d: d.update(quotas={"scores_per_day": "5"}),
    lambda d: d.update(quotas={"verify_per_subject_per_day": 3.0}),
    lambda d: d.update(min_group_units=True),
], ids=["epsilon true", "delta false", "price true", "epsilon 5e-324", "epsilon '1e400'", "epsilon '1e-400'",
        "price with 41 digits", "quota true", "quota '5'", "quota 3.0", "min_group_units true"])
def test_agreement_amounts_are_strict_and_stay_readable(parties, mutate):
    doc = {"title": "t", "grantee": "risk-lab", "datasets": ["tax_income"], "columns": {"tax_income": ["age"]},
           "purposes": ["credit_risk"], "job_kinds": ["query"], "valid_from": "2026-01-01T00:00:00Z",
           "valid_until": "2030-01-01T00:00:00Z", "budget": {"epsilon": 1, "delta": "1e-6"}}
    mutate(doc)
    token = token_of(parties.owner)
    r = httpx.post(parties.service.url + "/v1/agreements", json=doc, headers=auth(token), timeout=30)
    assert r.status_code == 422 and r.json()["error"]["code"] == "INVALID_REQUEST", r.text
    assert parties.owner.agreements() == []  # nothing stored; the list still reads


@pytest.mark.parametrize(("field", "value"), [
    ("max_rows_per_unit", True), ("max_rows_per_unit", "2"), ("bounds", [True, 100]), ("bounds", ["16", 100]),
])
def test_dataset_sensitivities_refuse_bools_and_strings(service, tax_spec, field, value):
    owner = service.principal("city-tax-bureau", "owner")
    spec = json.loads(json.dumps(tax_spec))
    spec["name"] = "tax_strict"
    if field == "bounds":
        spec["columns"]["age"]["bounds"] = value
    else:
        spec[field] = value
    token = token_of(owner)
    r = httpx.post(service.url + "/v1/datasets", json=spec, headers=auth(token), timeout=30)
    assert r.status_code == 422 and r.json()["error"]["code"] == "INVALID_REQUEST", r.text
    assert owner.datasets() == []
