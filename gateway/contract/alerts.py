"""Response models of alerts (监测预警, ``/v1/alerts``) and their webhooks (``/v1/alerts/webhooks``)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

from gateway.contract import Out, example

ALERT_EXAMPLE: dict[str, Any] = {
    "id": "alr_0123456789abcdef",
    "rule": "budget",
    "severity": "warning",
    "owner": "tax-bureau",
    "agreement_id": "agr_0123456789abcdef",
    "dataset": "tax_income",
    "principal": None,
    "subject_hash": None,
    "window_start": None,
    "count": None,
    "details": {"spent_share": 0.85, "threshold": 0.8, "grantee": "bank-a"},
    "created_at": "2026-12-03T10:00:00+00:00",
    "acked_at": None,
    "acked_by": None,
}

WEBHOOK_EXAMPLE: dict[str, Any] = {
    "subscriber": "tax-bureau",
    "url": "https://alerts.example.org/veilbox",
    "created_by": "admin",
    "created_at": "2026-12-03T10:00:00+00:00",
}


class Alert(Out):
    """An alert raised once for its condition: the rule, what it names (a subject only as its keyed hash, and only
    to the owner it concerns), the window and count that crossed the threshold, and who acknowledged it."""

    model_config = ConfigDict(json_schema_extra=example(ALERT_EXAMPLE))
    id: str
    rule: str
    severity: str
    owner: str | None
    agreement_id: str | None
    dataset: str | None
    principal: str | None
    subject_hash: str | None
    window_start: str | None
    count: int | None
    details: dict[str, Any]
    created_at: str | None
    acked_at: str | None
    acked_by: str | None


class Webhook(Out):
    """A subscriber's webhook: its URL without the query (the secret is never shown)."""

    model_config = ConfigDict(json_schema_extra=example(WEBHOOK_EXAMPLE))
    subscriber: str
    url: str
    created_by: str
    created_at: str | None
