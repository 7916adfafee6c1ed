"""Liveness and readiness, outside ``/v1`` and unauthenticated (`gateway.health`): both are ``async`` and
never wait for the request threadpool, so they answer while heavy calls fill it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from gateway import errors
from gateway.contract import OUT, ErrorCode, doc
from gateway.contract.system import Health, Ready
from gateway.health import RETRY_AFTER_S, Probes, failing

router = APIRouter(tags=["system"])


@router.get(
    "/health",
    name="health",
    response_model=Health,
    **OUT,
    **doc("Liveness: the service answers (touches no store nor engine)", auth=False),
)
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    name="ready",
    response_model=Ready,
    **OUT,
    **doc(
        "Readiness: the store, the audit head, the query engines and the job worker can serve",
        ErrorCode.UNAVAILABLE,
        auth=False,
    ),
)
async def ready(request: Request) -> Any:
    """``200`` when every check passes; ``503 UNAVAILABLE`` with ``Retry-After`` and the failing checks."""
    probes: Probes = request.app.state.probes
    checks = await probes.ready()
    problems = failing(checks)
    if problems:
        return errors.error_response(ErrorCode.UNAVAILABLE, None, problems, headers={"Retry-After": str(RETRY_AFTER_S)})
    return {"status": "ready", "checks": checks}
