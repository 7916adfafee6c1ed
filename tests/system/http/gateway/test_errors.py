"""The error catalog covers every code, and every error path returns the documented body."""

import pytest
from fastapi import APIRouter

from catalog import errors as E
from catalog.errors import DomainError
from gateway.errors import CATALOG, error_body

API_MD_STATUS = {"UNAUTHENTICATED": 401, "NOT_FOUND_OR_FORBIDDEN": 404, "INVALID_REQUEST": 422,
                 "AGREEMENT_INACTIVE": 403, "POLICY_DENIED": 403, "QUERY_REJECTED": 422, "BUDGET_EXHAUSTED": 409,
                 "QUOTA_EXCEEDED": 429, "APPROVAL_REQUIRED": 409, "CIPHERTEXT_INVALID": 422, "INTERNAL": 500}


def test_catalog_covers_every_code_with_contract_status():
    assert set(CATALOG) == set(E.ALL_CODES)
    for code, status in API_MD_STATUS.items():
        assert CATALOG[code][0] == status


def test_unknown_code_cannot_be_raised():
    with pytest.raises(ValueError):
        DomainError("SOMETHING_NEW", "x")


def test_internal_never_carries_text():
    assert error_body("INTERNAL", "duckdb: Binder Error at /data/x.parquet", [{"x": 1}]) == {
        "error": {"code": "INTERNAL", "message": "internal error", "details": []}}


def test_unexpected_exception_is_scrubbed_and_audited(service):
    router = APIRouter()

    @router.get("/v1/boom", name="test.boom")
    def boom():
        raise RuntimeError("Catalog Error: table tax_income at /secret/path has 12345 rows")

    service_app = service.ctx  # the live app is reached through the same context
    from fastapi.testclient import TestClient

    from gateway.app import create_app

    app = create_app(service_app)
    app.include_router(router)
    r = TestClient(app, raise_server_exceptions=False).get("/v1/boom")
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "INTERNAL", "message": "internal error", "details": []}}
    last = service.ctx.audit.entries(0, 1000)[0][-1]
    assert (last["action"], last["decision"], last["code"]) == ("test.boom", "error", "INTERNAL")
