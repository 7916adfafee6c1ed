from __future__ import annotations

from fastapi import APIRouter

from gateway.contract import OUT, doc
from gateway.contract.system import Health

router = APIRouter(tags=["system"])


@router.get("/health", name="health", response_model=Health, **OUT,
            **doc("Liveness: the service answers", auth=False))
def health() -> dict[str, str]:
    return {"status": "ok"}
