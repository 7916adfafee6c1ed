"""Metadata tables owned by the gateway: principals, the audit log and its signatures, service metadata."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Float, Integer, MetaData, String, Table, Text

metadata = MetaData()

service_meta = Table(
    "service_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

principals = Table(
    "principals",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(64), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    # a named reviewer's kind (role ``reviewer``: expert_committee | cyberspace; migration 0021)
    Column("reviewer_kind", String(32), nullable=True),
)

audit_entries = Table(
    "audit_entries",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("ts", String(32), nullable=False, index=True),  # the alert rules' windows (migration 0017)
    Column("actor", String(64), nullable=False, index=True),
    Column("role", String(16), nullable=False),
    Column("action", String(64), nullable=False, index=True),
    Column("agreement_id", String(40), nullable=True, index=True),
    Column("dataset", String(63), nullable=True, index=True),
    Column("decision", String(8), nullable=False),
    Column("code", String(40), nullable=True),
    Column("epsilon", String(64), nullable=True),
    Column("delta", String(64), nullable=True),
    Column("output_digest", String(80), nullable=True),
    Column("subject_hash", String(40), nullable=True),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(80), nullable=False),
    Column("hash", String(80), nullable=False),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("hash", String(80), nullable=False),
    Column("signature", String(200), nullable=False),
    Column("key_id", String(40), nullable=False),
    Column("ts", String(32), nullable=False),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(80), nullable=False),
    Column("signature", String(200), nullable=False),
)

console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),  # SHA-256 of the cookie value; the value itself is never stored
    Column("principal_id", String(40), nullable=False, index=True),
    Column("csrf", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
)

job_reviews = Table(  # the owner's review of a job spec, computed once (`gateway.services.jobs.review_job`)
    "job_reviews",
    metadata,
    Column("key", String(80), primary_key=True),  # sha256 over kind, spec hash, agreement document, fingerprints
    Column("spec_hash", String(80), nullable=False, index=True),
    Column("review_json", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

idempotency_keys = Table(  # a charging call's first answer, per caller and key (`gateway.services.idempotency`)
    "idempotency_keys",
    metadata,
    Column("principal", String(40), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("request_hash", String(64), nullable=False),  # sha256 over method, path and the canonical JSON body
    Column("state", String(16), nullable=False),  # running | done
    Column("status_code", Integer, nullable=True),
    Column("body", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
)

secagg_rounds = Table(  # a secure-aggregation round (`gateway.services.rounds`): every gateway process serves it
    "secagg_rounds",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("opener", String(64), nullable=False, index=True),
    Column("agreement_id", String(40), nullable=False),
    Column("config", Text, nullable=False),  # the public RoundConfig as JSON (participants, threshold, seed, ...)
    Column("task", Text, nullable=True),  # the public task shown to the participants, JSON
    Column("stage", String(16), nullable=False, index=True),
    Column("stage_timeout", Float, nullable=False),
    Column("opened_at", Float, nullable=False),  # epoch seconds, the registry's clock
    Column("deadline", Float, nullable=False),  # when the current stage closes at the latest
    Column("finished_at", Float, nullable=True),
    Column("history", Text, nullable=False),  # the stage closures, JSON list
    Column("server", Text, nullable=False),  # the protocol server's stage, abort reason, sum and survivors (JSON)
    Column("version", Integer, nullable=False),  # bumped by every change (the row is locked while it is made)
)

secagg_round_members = Table(  # who takes part in which round (the rounds a principal sees)
    "secagg_round_members",
    metadata,
    Column("round_id", String(40), primary_key=True),
    Column("name", String(64), primary_key=True, index=True),
)

secagg_round_entries = Table(  # what the protocol server received, one row per sender and part (mpc STATE_PARTS)
    "secagg_round_entries",
    metadata,
    Column("round_id", String(40), primary_key=True),
    Column("part", String(16), primary_key=True),  # keys | envelopes | masked | revealed
    Column("sender", String(64), primary_key=True),
    Column("seq", Integer, nullable=False),  # arrival order within the part
    Column("value", Text, nullable=False),  # `SecAggServer.entry` as JSON
)

alerts = Table(  # alerts (监测预警) the worker raised (`gateway.services.alerts`), once per condition
    "alerts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("rule", String(32), nullable=False, index=True),
    Column("condition_key", String(300), nullable=False, unique=True),  # a condition fires once, whoever races
    Column("severity", String(8), nullable=False),
    Column("owner", String(64), nullable=True, index=True),  # the data owner it concerns, who reads it
    Column("agreement_id", String(40), nullable=True),
    Column("dataset", String(63), nullable=True),
    Column("principal", String(64), nullable=True),  # the principal whose calls were refused
    Column("subject_hash", String(128), nullable=True),  # keyed hash only; shown to the owner only
    Column("window_start", Float, nullable=True),  # epoch seconds
    Column("count", Integer, nullable=True),
    Column("details", Text, nullable=False),  # JSON: threshold, observed values
    Column("created_at", Float, nullable=False),  # epoch seconds
    Column("acked_at", Float, nullable=True),
    Column("acked_by", String(64), nullable=True),
)

alert_webhooks = Table(  # an admin's webhook per subscriber; its HMAC secret is a keyring secret, never here
    "alert_webhooks",
    metadata,
    Column("subscriber", String(64), primary_key=True),  # a principal name: it receives the alerts it may read
    Column("url", Text, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
)

alert_deliveries = Table(  # one alert to one webhook: attempts, the next one, delivered or failed
    "alert_deliveries",
    metadata,
    Column("alert_id", String(40), primary_key=True),
    Column("subscriber", String(64), primary_key=True),
    Column("state", String(16), nullable=False, index=True),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Float, nullable=False, index=True),  # epoch seconds
    Column("last_error", Text, nullable=True),
    Column("updated_at", Float, nullable=False),
)
