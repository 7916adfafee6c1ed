"""The console's last route: any other path under ``/console`` is a not-found page (after the sign-in check)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from catalog.errors import not_found
from gateway.console._web import (
    guarded,
    render,
    signed_in,
)

router = APIRouter(include_in_schema=False)


@router.get("/{path:path}", name="console.unknown", response_class=HTMLResponse)
@guarded
async def unknown(request: Request, path: str) -> Response:
    session = await signed_in(request)
    raise not_found("page")
    return render(request, "refused.html", session)  # pragma: no cover
