"""Responses of the system routes (``GET /health``, ``GET /ready``; `gateway.health`)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict

from gateway.contract import Out, example


class Health(Out):
    """Liveness: the process answers (no store, engine or file is touched)."""

    model_config = ConfigDict(json_schema_extra=example({"status": "ok"}))
    status: Literal["ok"]


class ReadyChecks(Out):
    """Each readiness check's word: ``ok``, ``off`` (a worker this process does not run) or what failed."""

    store: str
    audit: str
    engines: str
    worker: str


class Ready(Out):
    """Readiness: the store, the audit head, the query engines and the job worker can serve."""

    model_config = ConfigDict(
        json_schema_extra=example(
            {"status": "ready", "checks": {"store": "ok", "audit": "ok", "engines": "ok", "worker": "ok"}}
        )
    )
    status: Literal["ready"]
    checks: ReadyChecks
