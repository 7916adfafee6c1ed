"""The model registry (API.md "Models and scoring"): cards and certificates of released models."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from catalog import models as model_registry
from catalog.errors import not_found
from gateway.deps import Audit, Ctx, CurrentPrincipal

router = APIRouter(tags=["models"])


@router.get("/models", name="model.list")
def list_models(_: CurrentPrincipal, ctx: Ctx) -> list[dict[str, Any]]:
    """Every released model's card and certificate (never the weights)."""
    return [m.public() for m in model_registry.list_models(ctx.engine)]


@router.get("/models/{model_id}", name="model.show")
def show(model_id: str, _: CurrentPrincipal, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """One model: features and encoding, the DP guarantee, metrics, source datasets, certificate."""
    m = model_registry.get_model(ctx.engine, model_id)
    if m is None:
        raise not_found("model")
    ev.agreement_id = m.agreement_id
    ev.details["model_id"] = m.id
    return m.public()
