"""The interactive API docs, `/docs` (Swagger UI) and `/redoc` (ReDoc), served entirely from this server.

FastAPI's own pages load their scripts, styles, favicon and fonts from a CDN and stay blank on a machine without
internet (an air-gapped data domain is the normal case here). The assets come instead from the pinned PyPI package
``fastapi-offline`` (MIT; Swagger UI and ReDoc standalone bundles, see pyproject.toml for the version) and are
served under ``/docs/static``; the pages reference nothing else (tests/system/http/gateway/test_offline_docs.py
checks it in a closed network namespace). Outside ``/v1`` and unaudited, like ``/openapi.json``; not part of the
HTTP contract (``include_in_schema=False``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

#: Swagger UI and ReDoc bundles shipped by the pinned ``fastapi-offline`` package.
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
STATIC = "/docs/static"

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Veilbox API",
        swagger_js_url=f"{STATIC}/swagger-ui-bundle.js",
        swagger_css_url=f"{STATIC}/swagger-ui.css",
        swagger_favicon_url=f"{STATIC}/favicon.png",
    )


@router.get("/redoc")
async def redoc() -> HTMLResponse:
    return get_redoc_html(
        openapi_url="/openapi.json",
        title="Veilbox API",
        redoc_js_url=f"{STATIC}/redoc.standalone.js",
        redoc_favicon_url=f"{STATIC}/favicon.png",
        with_google_fonts=False,
    )


def mount(app: FastAPI) -> None:
    """Serve the docs pages and their bundled assets (the app is built with ``docs_url=None, redoc_url=None``)."""
    app.mount(STATIC, StaticFiles(directory=ASSETS_DIR), name="docs.static")
    app.include_router(router)
