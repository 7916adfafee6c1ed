from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["system"])


@router.get("/health", name="health")
def health() -> dict[str, str]:
    return {"status": "ok"}
