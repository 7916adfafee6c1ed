"""The model registry: every model that left the sandbox, with its card and a certificate.

A model is registered when its training job passes the release gate. The record names the job, the agreement
and the grantee who trained it, the algorithm, the intended purpose, the features, the card (DP guarantee,
metrics, encoding), the source datasets with the fingerprints it was trained on, and a certificate: a
unique, human-readable id (``VBX-MC-<year>-<8 hex>``) with a validity period. The weights stay in the
service's models directory (never served); `public` is the API view and never names the weights file.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, DateTime, Engine, Integer, String, Table, Text, select

from catalog._tables import metadata
from catalog.errors import invalid

__all__ = ["ModelRecord", "get_model", "list_models", "model_registry", "register_model"]

model_registry = Table(
    "model_registry",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("certificate_id", String(40), nullable=False, unique=True),
    Column("job_id", String(64), nullable=False, unique=True),
    Column("agreement_id", String(64), nullable=False, index=True),
    Column("owner", String(64), nullable=False, index=True),
    Column("algorithm", String(40), nullable=False),
    Column("purpose", String(200), nullable=True),
    Column("features_json", Text, nullable=False),
    Column("card_json", Text, nullable=False),
    Column("weights_path", Text, nullable=False),
    Column("output_digest", String(80), nullable=False),
    Column("source_datasets_json", Text, nullable=False),
    Column("valid_days", Integer, nullable=False),
    Column("valid_from", DateTime(timezone=True), nullable=False),
    Column("valid_until", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


def _utc(v: dt.datetime) -> dt.datetime:
    return v.replace(tzinfo=dt.UTC) if v.tzinfo is None else v.astimezone(dt.UTC)


@dataclass(frozen=True)
class ModelRecord:
    id: str
    certificate_id: str
    job_id: str
    agreement_id: str
    owner: str
    algorithm: str
    purpose: str | None
    features: list[str]
    card: dict[str, Any]
    weights_path: str  # relative to the service's models directory
    output_digest: str
    source_datasets: dict[str, str]  # name -> fingerprint at training time
    valid_from: dt.datetime
    valid_until: dt.datetime
    created_at: dt.datetime

    def valid_at(self, now: dt.datetime) -> bool:
        return self.valid_from <= _utc(now) < self.valid_until

    def public(self, now: dt.datetime | None = None) -> dict[str, Any]:
        """``GET /models/{id}``: the card and the certificate; never the weights or their location."""
        now = now or dt.datetime.now(dt.UTC)
        return {
            "id": self.id,
            "certificate": {"id": self.certificate_id, "valid_from": self.valid_from.isoformat(),
                            "valid_until": self.valid_until.isoformat(), "valid": self.valid_at(now),
                            "algorithm": self.algorithm, "purpose": self.purpose},
            "algorithm": self.algorithm,
            "purpose": self.purpose,
            "features": self.features,
            "card": self.card,
            "source_datasets": {name: {"fingerprint": fp} for name, fp in sorted(self.source_datasets.items())},
            "job_id": self.job_id,
            "agreement_id": self.agreement_id,
            "trained_by": self.owner,
            "output_digest": self.output_digest,
            "created_at": self.created_at.isoformat(),
        }


def _row(r: Any) -> ModelRecord:
    return ModelRecord(
        id=r.id, certificate_id=r.certificate_id, job_id=r.job_id, agreement_id=r.agreement_id, owner=r.owner,
        algorithm=r.algorithm, purpose=r.purpose, features=json.loads(r.features_json),
        card=json.loads(r.card_json), weights_path=r.weights_path, output_digest=r.output_digest,
        source_datasets=json.loads(r.source_datasets_json), valid_from=_utc(r.valid_from),
        valid_until=_utc(r.valid_until), created_at=_utc(r.created_at))


def register_model(engine: Engine, *, job_id: str, agreement_id: str, owner: str, algorithm: str,
                   purpose: str | None, features: list[str], card: dict[str, Any], weights_path: str,
                   output_digest: str, source_datasets: dict[str, str], valid_days: int = 365,
                   now: dt.datetime | None = None) -> ModelRecord:
    """Record a released model and issue its certificate (``INVALID_REQUEST`` on malformed arguments)."""
    now = _utc(now or dt.datetime.now(dt.UTC))
    if not 1 <= valid_days <= 3660:
        raise invalid("a model certificate is valid for 1 to 3660 days")
    if weights_path.startswith("/") or ".." in weights_path.split("/"):
        raise invalid("weights_path is relative to the models directory")
    if not features or not source_datasets:
        raise invalid("a model names its features and source datasets")
    model_id = "mdl_" + secrets.token_hex(10)
    certificate = f"VBX-MC-{now.year}-{secrets.token_hex(4).upper()}"
    with engine.begin() as conn:
        conn.execute(model_registry.insert().values(
            id=model_id, certificate_id=certificate, job_id=job_id, agreement_id=agreement_id, owner=owner,
            algorithm=algorithm, purpose=purpose, features_json=json.dumps(list(features)),
            card_json=json.dumps(card, sort_keys=True), weights_path=weights_path, output_digest=output_digest,
            source_datasets_json=json.dumps(dict(source_datasets), sort_keys=True), valid_days=valid_days,
            valid_from=now, valid_until=now + dt.timedelta(days=valid_days), created_at=now))
    rec = get_model(engine, model_id)
    assert rec is not None
    return rec


def get_model(engine: Engine, model_id: str) -> ModelRecord | None:
    with engine.connect() as conn:
        r = conn.execute(select(model_registry).where(model_registry.c.id == model_id)).first()
    return _row(r) if r is not None else None


def list_models(engine: Engine) -> list[ModelRecord]:
    with engine.connect() as conn:
        rows = conn.execute(select(model_registry).order_by(model_registry.c.created_at, model_registry.c.id)).all()
    return [_row(r) for r in rows]
