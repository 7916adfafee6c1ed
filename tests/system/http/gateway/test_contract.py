"""The typed contract: every operation of docs/openapi.json documents its answers, its errors and an example.

For each operation of the app's schema (the one `gateway.openapi` writes):

* a summary;
* a 2xx answer with a JSON schema, or an explicit non-JSON media type (Parquet, PDF), or 204 without a body;
* an example of the JSON answer (on the operation's media type or on the response model) and, when the operation
  takes a body, of the request;
* its errors: 422 and 500 for every operation, 401 for every authenticated one, each documented with the one
  error envelope (`gateway.contract.ErrorEnvelope`) and a description naming the codes behind the status, every
  named code answering with that status in the catalog (`vocab.errors.CATALOG`).

Response models name exact fields (`gateway.contract.Out` forbids others): a route that starts returning an
undeclared field answers 500, which tests/system/http/gateway/test_fuzz_routes.py (a known-good request for
every operation) and the HTTP flow tests would report, so the models cannot silently drift from what the routes return.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import BaseModel

from gateway import contract, openapi
from gateway.contract import ErrorEnvelope, Open, Out, errors_for
from vocab.errors import CATALOG, ErrorCode

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return openapi.build()


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, ops in spec["paths"].items() for m, op in ops.items() if m in METHODS]


def _schema(spec: dict[str, Any], s: dict[str, Any]) -> dict[str, Any]:
    """Follow a $ref (and, for arrays, the items' $ref) to the component schema."""
    if s.get("type") == "array" and "items" in s:
        s = s["items"]
    ref = s.get("$ref")
    if ref:
        return dict(spec["components"]["schemas"][ref.rsplit("/", 1)[1]])
    return s


def test_every_operation_has_a_summary(spec):
    missing = [f"{m} {p}" for m, p, op in operations(spec) if not op.get("summary")]
    assert not missing, missing


def test_every_operation_documents_a_success_body_and_an_example(spec):
    problems = []
    for m, p, op in operations(spec):
        ok = {s: r for s, r in op["responses"].items() if s.startswith("2")}
        if not ok:
            problems.append(f"{m} {p}: no 2xx answer")
            continue
        for status, resp in ok.items():
            content = resp.get("content") or {}
            if status == "204":
                if content:
                    problems.append(f"{m} {p}: 204 with a body")
                continue
            if not content:
                problems.append(f"{m} {p}: {status} documents no body")
                continue
            for media, body in content.items():
                if media != "application/json":
                    continue  # a download: the media type is the contract
                schema = body.get("schema") or {}
                if not schema:
                    problems.append(f"{m} {p}: {status} JSON answer without a schema")
                    continue
                if "example" not in body and "examples" not in body and not _schema(spec, schema).get("examples"):
                    problems.append(f"{m} {p}: {status} JSON answer without an example")
        if "requestBody" in op:
            media = op["requestBody"].get("content", {}).get("application/json", {})
            schema = _schema(spec, media.get("schema") or {})
            if "example" not in media and "examples" not in media and not schema.get("examples"):
                problems.append(f"{m} {p}: request body without an example")
    assert not problems, "\n".join(problems)


def test_every_operation_documents_its_errors_with_the_envelope(spec):
    problems = []
    envelope = "#/components/schemas/ErrorEnvelope"
    for m, p, op in operations(spec):
        errors = {s: r for s, r in op["responses"].items() if s[0] in "45"}
        expected = {"422", "500"} | ({"401"} if op.get("security") else set())
        if missing := expected - errors.keys():
            problems.append(f"{m} {p}: undocumented statuses {sorted(missing)}")
        for status, resp in errors.items():
            if resp.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref") != envelope:
                problems.append(f"{m} {p}: {status} is not the error envelope")
            codes = re.findall(r"`([A-Z_]+)`", resp.get("description", ""))
            if not codes:
                problems.append(f"{m} {p}: {status} names no error code")
            for code in codes:
                if code not in ErrorCode.__members__ or CATALOG[ErrorCode(code)][0] != int(status):
                    problems.append(f"{m} {p}: {status} names {code}, which answers another status")
    assert not problems, "\n".join(problems)
    assert "HTTPValidationError" not in spec["components"]["schemas"], "FastAPI's default 422 body is not ours"


def test_errors_for_groups_codes_by_status():
    r = errors_for(ErrorCode.POLICY_DENIED, ErrorCode.AGREEMENT_INACTIVE, ErrorCode.QUERY_REJECTED)
    assert set(r) == {401, 403, 422, 500}
    assert "`AGREEMENT_INACTIVE`" in r[403]["description"] and "`POLICY_DENIED`" in r[403]["description"]
    assert "`INVALID_REQUEST`" in r[422]["description"] and "`QUERY_REJECTED`" in r[422]["description"]
    assert all(v["model"] is ErrorEnvelope for v in r.values())
    assert set(errors_for(auth=False)) == {422, 500}


def test_the_envelope_is_the_body_the_gateway_answers():
    from gateway.errors import error_body

    for code in ErrorCode:
        ErrorEnvelope.model_validate(error_body(code))


def _models() -> list[type[BaseModel]]:
    import importlib
    import pkgutil

    out: list[type[BaseModel]] = []
    for info in pkgutil.iter_modules(contract.__path__):
        mod = importlib.import_module(f"gateway.contract.{info.name}")
        out += [v for v in vars(mod).values() if isinstance(v, type) and issubclass(v, Out | Open)
                and v.__module__ == mod.__name__]
    return out


@pytest.mark.parametrize("model", _models(), ids=lambda m: m.__name__)
def test_every_example_is_a_valid_answer(model: type[BaseModel]):
    """Examples are answers the model accepts unchanged (exact models: no undeclared field)."""
    for ex in (model.model_json_schema().get("examples") or []):
        value = model.model_validate(ex)
        assert value.model_dump(mode="json", exclude_unset=True) == ex
