"""Alerts (监测预警, docs/alerts.md): list and acknowledge; the admin's webhooks per subscriber.

Thin: `gateway.services.alerts` decides who reads and acknowledges which alert and journals each change; the job
worker raises the alerts and delivers the webhooks.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status

from gateway.contract import OUT, ErrorCode
from gateway.contract import doc as describe
from gateway.contract.alerts import Alert, Webhook
from gateway.deps import Admin, Audit, Ctx, CurrentPrincipal, require_role
from gateway.identities import Principal, RoleName
from gateway.services import alerts as service
from gateway.services.alerts import WebhookBody
from gateway.services.jobs import actor_of

router = APIRouter(tags=["alerts"])

Acknowledger = Annotated[Principal, require_role(RoleName.OWNER, RoleName.AUTHORITY, RoleName.ADMIN)]
Subscriber = Annotated[str, Path(min_length=1, max_length=64)]


@router.get(
    "/alerts",
    name="alert.list",
    response_model=list[Alert],
    **OUT,
    **describe("The alerts you may read, newest first", ErrorCode.INVALID_REQUEST),
)
def list_alerts(
    p: CurrentPrincipal, ctx: Ctx, ev: Audit, unacked: bool = Query(False, description="only unacknowledged ones")
) -> list[dict[str, Any]]:
    """The data authority, regulators and admins read every alert; an owner those about its agreements and
    datasets (with the subject's hash of a per-subject alert); other roles none."""
    return service.list_alerts(ctx, actor_of(p), unacked=unacked)


@router.post(
    "/alerts/{alert_id}/ack",
    name="alert.ack",
    response_model=Alert,
    **OUT,
    **describe(
        "Acknowledge an alert (its owner, the authority, an admin)",
        ErrorCode.POLICY_DENIED,
        ErrorCode.NOT_FOUND_OR_FORBIDDEN,
    ),
)
def ack_alert(alert_id: str, p: Acknowledger, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """Acknowledging twice leaves the first acknowledgement as it was."""
    return service.acknowledge(ctx, p, alert_id, ev)


@router.get(
    "/alerts/webhooks",
    name="alert.webhook.list",
    response_model=list[Webhook],
    **OUT,
    **describe("The alert webhooks (admin; secrets are never shown)", ErrorCode.POLICY_DENIED),
)
def list_webhooks(admin: Admin, ctx: Ctx, ev: Audit) -> list[dict[str, Any]]:
    return service.list_webhooks(ctx)


@router.put(
    "/alerts/webhooks/{subscriber}",
    name="alert.webhook.set",
    response_model=Webhook,
    **OUT,
    **describe(
        "Set a subscriber's alert webhook (admin): the alerts it may read are POSTed there, HMAC-signed",
        ErrorCode.POLICY_DENIED,
        ErrorCode.INVALID_REQUEST,
        request_example={"url": "https://alerts.example.org/veilbox", "secret": "s" * 32},
    ),
)
def set_webhook(subscriber: Subscriber, body: WebhookBody, admin: Admin, ctx: Ctx, ev: Audit) -> dict[str, Any]:
    """The secret is stored wrapped by the master key and never shown again; setting it again replaces URL and
    secret."""
    return service.set_webhook(ctx, admin, subscriber, body, ev)


@router.delete(
    "/alerts/webhooks/{subscriber}",
    name="alert.webhook.remove",
    status_code=status.HTTP_204_NO_CONTENT,
    **describe(
        "Remove a subscriber's alert webhook (admin)", ErrorCode.POLICY_DENIED, ErrorCode.NOT_FOUND_OR_FORBIDDEN
    ),
)
def remove_webhook(subscriber: Subscriber, admin: Admin, ctx: Ctx, ev: Audit) -> None:
    service.remove_webhook(ctx, subscriber, ev)
