"""Responses of the system routes (``GET /health``)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict

from gateway.contract import Out, example


class Health(Out):
    model_config = ConfigDict(json_schema_extra=example({"status": "ok"}))
    status: Literal["ok"]
