"""Responses of the audit routes (docs/api.md, "Audit")."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from gateway.contract import Open, Out, example

_HASH = "06ea67e9a7e47d53baf2846d36595c04ecac8eabdab2e85174de80ed4f4e13a3"
ENTRY_EXAMPLE: dict[str, Any] = {
    "seq": 9, "ts": "2026-12-03T03:38:47.188097+00:00", "actor": "risk-lab", "role": "operator",
    "action": "agreement.accept", "agreement_id": "agr_98205036e5c1f0b5304e", "dataset": None, "decision": "allow",
    "code": None, "epsilon": None, "delta": None, "output_digest": None, "subject_hash": None,
    "details": "{\"method\":\"POST\",\"path\":\"/agreements/{agreement_id}/accept\",\"status\":200}",
    "prev_hash": "34530aa653652a27a10f23aa97221a1ee6fa9e58967b9bf731576aefe59f14ac", "hash": _HASH}


class AuditEntry(Out):
    """One entry of the hash chain, as stored (``details`` is its canonical JSON text)."""

    seq: int
    ts: str
    actor: str
    role: str
    action: str
    agreement_id: str | None
    dataset: str | None
    decision: str = Field(description="allow | deny | error")
    code: str | None
    epsilon: str | None = Field(description="ε debited by this action, exact text")
    delta: str | None
    output_digest: str | None
    subject_hash: str | None = Field(description="keyed hash of a verified subject (never the subject)")
    details: str = Field(description="canonical JSON object of the action's details")
    prev_hash: str
    hash: str


class AuditPage(Out):
    model_config = ConfigDict(json_schema_extra=example({"entries": [ENTRY_EXAMPLE], "next": 10}))
    entries: list[AuditEntry]
    next: int = Field(description="pass as `since` for the next page")


class ChainReport(Out):
    model_config = ConfigDict(json_schema_extra=example(
        {"ok": True, "entries": 412, "head": _HASH, "first_bad_seq": None, "reason": None}))
    ok: bool
    entries: int
    head: str | None
    first_bad_seq: int | None
    reason: str | None


class MonthlyReport(Open):
    """The monthly, quarterly or annual report (``format=json``): regulator and data authority."""

    model_config = ConfigDict(json_schema_extra=example({
        "month": "2026-12", "period": "2026-12", "kind": "month",
        "generated_at": "2026-12-31T23:00:00+00:00", "entries": 412, "first_seq": 1,
        "last_seq": 412, "chain": {"ok": True, "entries": 412, "head": _HASH, "first_bad_seq": None, "reason": None},
        "agreements": [], "datasets": [], "products": [], "actions": [{"action": "query.run", "count": 12}]}))
    month: str | None = Field(description="the month of a monthly report (null for a quarter or a year)")
    period: str = Field(description="YYYY-MM, YYYY-Qn or YYYY")
    kind: str = Field(description="month | quarter | year")
    generated_at: str
    entries: int
    first_seq: int | None
    last_seq: int | None
    chain: dict[str, Any]
    agreements: list[dict[str, Any]]
    datasets: list[dict[str, Any]]
    products: list[dict[str, Any]]
    actions: list[dict[str, Any]]


class IncidentEntry(Out):
    """An audit entry an incident report is built from."""

    seq: int
    ts: str
    action: str
    actor: str
    role: str
    hash: str


class IncidentFollowUp(Out):
    state: str = Field(description="open | resolved | final (a disposal: nothing follows)")
    deadline: str | None = Field(description="a rectification order's deadline")
    resolution: str | None = Field(description="resumed | revoked | enabled | closed | disposed | record signed")
    resolved_at: str | None
    resolved_by: str | None
    note: str | None


class IncidentReport(Out):
    """One incident (事件报告): a suspension, a disabled principal, a rectification order (整改), a dataset's
    withdrawal or disposal, an ended agreement's disposal, built from the audit entries it lists."""

    model_config = ConfigDict(json_schema_extra=example({
        "id": "inc-57", "kind": "rectification", "action": "order.issue", "ts": "2026-12-03T03:40:00.000000+00:00",
        "actor": "data-bureau", "role": "authority", "agreement_id": "agr_98205036e5c1f0b5304e",
        "agreement_title": "SME credit model", "dataset": None, "principal": None, "order_id": "ord_0123",
        "reasons": ["publish the consent notice"],
        "follow_up": {"state": "resolved", "deadline": "2026-12-31T23:59:59+00:00", "resolution": "closed",
                      "resolved_at": "2026-12-10T09:00:00.000000+00:00", "resolved_by": "data-bureau",
                      "note": "notice published"},
        "entries": [{"seq": 57, "ts": "2026-12-03T03:40:00.000000+00:00", "action": "order.issue",
                     "actor": "data-bureau", "role": "authority", "hash": _HASH}]}))
    id: str = Field(description="inc-<seq of the entry that opened it>")
    kind: str = Field(description="suspension | principal_suspension | rectification | withdrawal | disposal | "
                                  "agreement_disposal")
    action: str
    ts: str
    actor: str
    role: str
    agreement_id: str | None
    agreement_title: str | None
    dataset: str | None
    principal: str | None
    order_id: str | None
    reasons: list[str]
    follow_up: IncidentFollowUp
    entries: list[IncidentEntry]


_LINEAGE_FIELDS = ("seq", "ts", "actor", "role", "action", "agreement_id", "dataset", "decision", "code", "epsilon",
                   "output_digest", "hash")


class Lineage(Open):
    """Where a released output came from: the job, the agreement, the datasets' fingerprints, the model record
    and every audit entry carrying it."""

    model_config = ConfigDict(json_schema_extra=example({
        "key": "sha256:9f2c…", "output_digest": "sha256:9f2c…", "job": None, "model": None, "datasets": [],
        "agreement": None, "entries": [{k: ENTRY_EXAMPLE[k] for k in _LINEAGE_FIELDS}], "produced_by": "query.run"}))
    key: str
    output_digest: str | None
    job: dict[str, Any] | None
    model: dict[str, Any] | None
    datasets: list[dict[str, Any]]
    agreement: dict[str, Any] | None
    entries: list[dict[str, Any]]
    produced_by: str | None


class PublicKey(Out):
    model_config = ConfigDict(json_schema_extra=example({
        "key_id": "k_3f1a9c", "algorithm": "ed25519", "hash_alg": "sha256",
        "pem": "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA…\n-----END PUBLIC KEY-----\n"}))
    key_id: str
    algorithm: str
    hash_alg: str
    pem: str


PARQUET = {"application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}}}
PDF = {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}
