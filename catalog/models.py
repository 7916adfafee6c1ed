"""The model registry: every model that left the sandbox, with its card and a certificate.

A model is registered when its training job passes the release gate. The record names the job, the agreement
and the grantee who trained it, the algorithm, the intended purpose, the features, the card (DP guarantee,
metrics, encoding), the source datasets with the fingerprints it was trained on, and a certificate: a
unique, human-readable id (``VBX-MC-<year>-<8 hex>``) with a validity period. The weights stay in the
service's models directory (never served); `public` is the API view and never names the weights file.

Encrypted scoring meters the model per (agreement, model) and per output, with limits stated in the public card
(`ModelRecord.scoring_terms`):

- **decisions** (the default output: the sign of score − the bank's encrypted cut-off, one bit per applicant and
  slot part): at most `ModelRecord.decision_limit` in total (``card["scoring"]["max_decisions_per_agreement"]``,
  else `DEFAULT_DECISION_LIMIT`);
- **logits** (only under an agreement with ``score_logits``): at most `ModelRecord.logit_limit`
  (``card["scoring"]["max_logits_per_agreement"]``, or the legacy ``max_scores_per_agreement``, else the model's
  input width d). A linear model with d weights and a bias is determined by d + 1 logits of chosen inputs, so the
  default leaves it underdetermined.

`consume_scores` takes answers atomically before a request is evaluated and `refund_scores` returns them when the
evaluation fails. Both meters live in ``model_score_usage``: logits under the model id (as before decisions
existed), decisions under ``<model id>:decision``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Column, Connection, DateTime, Engine, Integer, String, Table, Text, select, update
from sqlalchemy.dialects import postgresql, sqlite

from catalog._tables import metadata, model_score_usage
from catalog.errors import QUOTA_EXCEEDED, DomainError, invalid

__all__ = ["DECISION_SCORE_RANGE", "DEFAULT_DECISION_LIMIT", "OUTPUTS", "ModelRecord", "Output", "consume_scores",
           "consume_scores_in", "decisions_to_recover", "get_model", "list_models", "model_registry", "new_model_ids",
           "refund_scores", "register_model", "register_model_in", "revoke_models_in", "score_usage"]

Output = Literal["decision", "logit"]
OUTPUTS: tuple[Output, ...] = ("decision", "logit")

#: Decisions one agreement may obtain from one model, unless the card says otherwise. 2^15 also keeps every
#: (bank, model) pair within the CKKS flood's analysed number of results (docs/mechanisms/he.md: KL 2Q/κ² for
#: Q ≤ 2^15 results; each result exposes at least 2 answers).
DEFAULT_DECISION_LIMIT = 2**15
#: The score range (±16 logits) the card's decision-extraction figures assume.
DECISION_SCORE_RANGE = 32.0

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
    # Set when the agreement the model was trained under ended and its exit clause revokes derived models
    # (`revoke_models_in`, run by the disposal: `policies.disposal`); a revoked certificate is never valid again.
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("revoked_reason", String(64), nullable=True),
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
    revoked_at: dt.datetime | None = None
    revoked_reason: str | None = None

    def valid_at(self, now: dt.datetime) -> bool:
        return self.revoked_at is None and self.valid_from <= _utc(now) < self.valid_until

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
            "scoring": self.scoring_terms(),
        }

    @property
    def input_width(self) -> int:
        """d, the number of weights (the card's ``input_width``, else the number of features)."""
        width = self.card.get("input_width") if isinstance(self.card, dict) else None
        return width if isinstance(width, int) and not isinstance(width, bool) and width > 0 else len(self.features)

    def _card_limit(self, *keys: str) -> int | None:
        scoring = self.card.get("scoring") if isinstance(self.card, dict) else None
        for key in keys:
            value = scoring.get(key) if isinstance(scoring, dict) else None
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
        return None

    @property
    def decision_limit(self) -> int:
        """Decisions one agreement may obtain from this model (stated in the card)."""
        value = self._card_limit("max_decisions_per_agreement")
        return DEFAULT_DECISION_LIMIT if value is None else value

    @property
    def logit_limit(self) -> int:
        """Logits one agreement may obtain from this model: by default d, one fewer than solve for the model."""
        value = self._card_limit("max_logits_per_agreement", "max_scores_per_agreement")
        return self.input_width if value is None else value

    def limit_for(self, output: Output) -> int:
        return self.logit_limit if output == "logit" else self.decision_limit

    def scoring_terms(self) -> dict[str, Any]:
        """What encrypted scoring offers and how it is limited (part of the public card)."""
        d = self.input_width
        logits, decisions = self.logit_limit, self.decision_limit
        coarse, fine = decisions_to_recover(d, 0.1), decisions_to_recover(d, 1e-3)
        return {
            "encrypted": self.algorithm == "logistic_regression",
            "outputs": list(OUTPUTS),
            "default_output": "decision",
            "returns": {
                "decision": "Enc(r·(w·x + b − t + η)) under the bank's CKKS key, t the bank's encrypted cut-off, "
                            "r > 0 a fresh secret mask, η the logit flood: read its sign (score ≥ cut-off)",
                "logit": "Enc(w·x + b), noise-flooded, only under agreements that grant score_logits",
            },
            "layouts": ["row", "columns"],
            "max_decisions_per_agreement": decisions,
            "max_logits_per_agreement": logits,
            "counted_per_request": {
                "decision": {"row": "2 per ciphertext (real and imaginary part)",
                             "columns": "2 per applicant of the declared batch"},
                "logit": {"row": "2 per ciphertext (real and imaginary part)",
                          "columns": "N, the context's polynomial degree (every slot)"},
            },
            "input_width": d,
            "extraction_query_bound": d + 1,
            "extraction": {
                "logits": {
                    "queries": d + 1,
                    "precision": "each weight to about 1.4·σ, σ the flood per logit: ≈ 6·10^-5·‖w‖₂ (columns), "
                                 "3·10^-6·‖w‖₂ (row) at N = 8192, scale 2^40; precision ε costs about "
                                 f"(σ/ε)²·{d + 1} logits",
                    "limit": logits,
                    "recoverable_within_limit": logits >= d + 1,
                },
                "decisions": {
                    "queries": {"0.1": coarse, "0.001": fine},
                    "precision": f"{d + 1} probe scores binary-searched with chosen cut-offs, one bit per decision, "
                                 f"scores within ±{DECISION_SCORE_RANGE / 2:g}: "
                                 f"(d + 1)·⌈log2({DECISION_SCORE_RANGE:g}/ε)⌉ decisions recover every weight to "
                                 "about ε (≥ the flood's σ); a decision also "
                                 "shows |score − t| within a factor 2^20 (the mask)",
                    "limit": decisions,
                    "recoverable_within_limit": decisions >= coarse,
                },
            },
            "extraction_note": f"d+1={d + 1} chosen logits determine this linear model up to the flood noise, and "
                               f"about {fine} chosen decisions to 10^-3; the limits bound how often and how "
                               "precisely it can be re-derived, and logits are granted per agreement",
        }


def decisions_to_recover(features: int, precision: float) -> int:
    """Decisions that recover a ``features``-weight linear model (and its bias) to ``precision`` by binary search:
    ``(d + 1)·⌈log2(DECISION_SCORE_RANGE / precision)⌉`` (one bit of each of d + 1 probe scores per decision)."""
    if features < 1 or not precision > 0:
        raise ValueError("features and precision must be positive")
    return (features + 1) * math.ceil(math.log2(DECISION_SCORE_RANGE / precision))


def _row(r: Any) -> ModelRecord:
    return ModelRecord(
        id=r.id, certificate_id=r.certificate_id, job_id=r.job_id, agreement_id=r.agreement_id, owner=r.owner,
        algorithm=r.algorithm, purpose=r.purpose, features=json.loads(r.features_json),
        card=json.loads(r.card_json), weights_path=r.weights_path, output_digest=r.output_digest,
        source_datasets=json.loads(r.source_datasets_json), valid_from=_utc(r.valid_from),
        valid_until=_utc(r.valid_until), created_at=_utc(r.created_at),
        revoked_at=_utc(r.revoked_at) if r.revoked_at is not None else None, revoked_reason=r.revoked_reason)


def new_model_ids(now: dt.datetime | None = None) -> tuple[str, str]:
    """A new model's id and certificate id, named before its registration (the release that registers it stores
    them in its result, in the same transaction: `register_model_in`)."""
    now = _utc(now or dt.datetime.now(dt.UTC))
    return "mdl_" + secrets.token_hex(10), f"VBX-MC-{now.year}-{secrets.token_hex(4).upper()}"


def register_model(engine: Engine, *, job_id: str, agreement_id: str, owner: str, algorithm: str,
                   purpose: str | None, features: list[str], card: dict[str, Any], weights_path: str,
                   output_digest: str, source_datasets: dict[str, str], valid_days: int = 365,
                   now: dt.datetime | None = None) -> ModelRecord:
    """Record a released model and issue its certificate (``INVALID_REQUEST`` on malformed arguments)."""
    with engine.begin() as conn:
        return register_model_in(conn, job_id=job_id, agreement_id=agreement_id, owner=owner, algorithm=algorithm,
                                 purpose=purpose, features=features, card=card, weights_path=weights_path,
                                 output_digest=output_digest, source_datasets=source_datasets,
                                 valid_days=valid_days, now=now)


def register_model_in(conn: Connection, *, job_id: str, agreement_id: str, owner: str, algorithm: str,
                      purpose: str | None, features: list[str], card: dict[str, Any], weights_path: str,
                      output_digest: str, source_datasets: dict[str, str], valid_days: int = 365,
                      now: dt.datetime | None = None, ids: tuple[str, str] | None = None) -> ModelRecord:
    """`register_model` inside the caller's transaction (a release registers its model in the release's own:
    both or neither), under ``ids`` (`new_model_ids`) when the caller named them first."""
    now = _utc(now or dt.datetime.now(dt.UTC))
    if not 1 <= valid_days <= 3660:
        raise invalid("a model certificate is valid for 1 to 3660 days")
    if weights_path.startswith("/") or ".." in weights_path.split("/"):
        raise invalid("weights_path is relative to the models directory")
    if not features or not source_datasets:
        raise invalid("a model names its features and source datasets")
    model_id, certificate = ids or new_model_ids(now)
    conn.execute(model_registry.insert().values(
        id=model_id, certificate_id=certificate, job_id=job_id, agreement_id=agreement_id, owner=owner,
        algorithm=algorithm, purpose=purpose, features_json=json.dumps(list(features)),
        card_json=json.dumps(card, sort_keys=True), weights_path=weights_path, output_digest=output_digest,
        source_datasets_json=json.dumps(dict(source_datasets), sort_keys=True), valid_days=valid_days,
        valid_from=now, valid_until=now + dt.timedelta(days=valid_days), created_at=now))
    r = conn.execute(select(model_registry).where(model_registry.c.id == model_id)).first()
    assert r is not None
    return _row(r)


def revoke_models_in(conn: Connection, agreement_id: str, reason: str, now: dt.datetime) -> list[ModelRecord]:
    """Revoke, in the caller's transaction, the certificate of every model trained under ``agreement_id`` not yet
    revoked; the models revoked now (none the second time)."""
    m = model_registry.c
    rows = conn.execute(select(model_registry).where(m.agreement_id == agreement_id, m.revoked_at.is_(None))
                        .order_by(m.created_at, m.id)).all()
    out = []
    for r in rows:
        res = conn.execute(update(model_registry).where(m.id == r.id, m.revoked_at.is_(None))
                           .values(revoked_at=_utc(now), revoked_reason=reason))
        if res.rowcount == 1:
            out.append(_row(r))
    return out


def get_model(engine: Engine, model_id: str) -> ModelRecord | None:
    with engine.connect() as conn:
        r = conn.execute(select(model_registry).where(model_registry.c.id == model_id)).first()
    return _row(r) if r is not None else None


def list_models(engine: Engine) -> list[ModelRecord]:
    with engine.connect() as conn:
        rows = conn.execute(select(model_registry).order_by(model_registry.c.created_at, model_registry.c.id)).all()
    return [_row(r) for r in rows]


def _ensure_usage_row(conn: Connection, agreement_id: str, model_id: str, now: dt.datetime) -> None:
    t = model_score_usage
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        ins = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(t)
        conn.execute(ins.values(agreement_id=agreement_id, model_id=model_id, scores=0, updated_at=now)
                     .on_conflict_do_nothing(index_elements=["agreement_id", "model_id"]))
    else:  # pragma: no cover - other dialects: check-then-insert inside the transaction
        key = (t.c.agreement_id == agreement_id, t.c.model_id == model_id)
        if conn.execute(select(t.c.scores).where(*key)).first() is None:
            conn.execute(t.insert().values(agreement_id=agreement_id, model_id=model_id, scores=0, updated_at=now))


def _meter(model_id: str, output: Output) -> str:
    """The usage row's key: the model id for logits (the meter's original meaning), ``<id>:decision`` for decisions."""
    if output not in OUTPUTS:
        raise invalid("output must be 'decision' or 'logit'")
    return model_id if output == "logit" else f"{model_id}:decision"


def score_usage(engine: Engine, agreement_id: str, model_id: str, output: Output = "logit") -> int:
    """Answers of kind ``output`` taken so far by ``agreement_id`` from ``model_id``."""
    t = model_score_usage
    with engine.connect() as conn:
        used = conn.execute(select(t.c.scores).where(t.c.agreement_id == agreement_id,
                                                     t.c.model_id == _meter(model_id, output))).scalar()
    return int(used or 0)


def consume_scores(engine: Engine, agreement_id: str, model_id: str, n: int, limit: int, *,
                   output: Output = "logit", now: dt.datetime | None = None) -> int:
    """Take ``n`` answers of kind ``output`` of the (agreement, model) quota atomically; the total used afterwards.

    One conditional ``UPDATE … SET scores = scores + n WHERE scores + n <= limit``: concurrent requests can
    never take more than ``limit`` together. ``QUOTA_EXCEEDED`` (nothing taken) when ``n`` does not fit.
    """
    with engine.begin() as conn:
        return consume_scores_in(conn, agreement_id, model_id, n, limit, output=output, now=now)


def consume_scores_in(conn: Connection, agreement_id: str, model_id: str, n: int, limit: int, *,
                      output: Output = "logit", now: dt.datetime | None = None) -> int:
    """`consume_scores` inside the caller's transaction (which a ``QUOTA_EXCEEDED`` should roll back)."""
    if n < 0:
        raise invalid("a score count cannot be negative")
    meter = _meter(model_id, output)
    now = _utc(now or dt.datetime.now(dt.UTC))
    t = model_score_usage
    key = (t.c.agreement_id == agreement_id, t.c.model_id == meter)
    _ensure_usage_row(conn, agreement_id, meter, now)
    res = conn.execute(update(t).where(*key, t.c.scores + n <= limit)
                       .values(scores=t.c.scores + n, updated_at=now))
    used = int(conn.execute(select(t.c.scores).where(*key)).scalar_one())
    if res.rowcount != 1:
        raise DomainError(QUOTA_EXCEEDED, f"the agreement's {output} quota for this model is used up",
                          [{"reason": f"quota.model_{output}s", "message": "model-extraction limit of the model card",
                            "limit": limit, "used": used, "requested": n}])
    return used


def refund_scores(engine: Engine, agreement_id: str, model_id: str, n: int, *, output: Output = "logit",
                  now: dt.datetime | None = None) -> None:
    """Give back ``n`` answers taken for a request whose evaluation failed (nothing was released)."""
    meter = _meter(model_id, output)
    now = _utc(now or dt.datetime.now(dt.UTC))
    t = model_score_usage
    with engine.begin() as conn:
        conn.execute(update(t).where(t.c.agreement_id == agreement_id, t.c.model_id == meter, t.c.scores >= n)
                     .values(scores=t.c.scores - n, updated_at=now))
