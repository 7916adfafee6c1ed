"""The answer of ``GET /agreements/{id}/disposal`` (docs/agreements.md, "Disposal"; `gateway.services.disposal`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from gateway.contract import Out, example

_D = "sha256:8adfa72723aa8a1823fec0cdbf6ab12484601a14f9dbc368921e755b9348665a"
DISPOSAL_EXAMPLE: dict[str, Any] = {
    "agreement_id": "agr_1b61737f85dc4169584d", "case": "revoked", "state": "complete",
    "started_at": "2026-12-03T04:00:00+00:00", "steps_done": ["jobs", "outputs", "models"],
    "completed_at": "2026-12-03T04:00:00+00:00",
    "record": {
        "format": "veilbox-disposal-1", "agreement_id": "agr_1b61737f85dc4169584d", "document_hash": _D,
        "owner": "tax-bureau", "grantee": "risk-lab", "case": "revoked", "started_at": "2026-12-03T04:00:00+00:00",
        "completed_at": "2026-12-03T04:00:00+00:00",
        "exit": {"cases": ["revoked", "expired"], "outputs": "seal", "models": "revoke"},
        "steps": [
            {"step": "jobs", "at": "2026-12-03T04:00:00+00:00", "cancelled": [
                {"job_id": "job_4d0a8363b79e6b6afc64", "spec_hash": _D, "was": "approved", "refunded": True}]},
            {"step": "outputs", "at": "2026-12-03T04:00:00+00:00", "method": "seal",
             "released": [{"job_id": "job_9c1e", "output_digest": _D, "stored": True}], "awaiting_release": []},
            {"step": "models", "at": "2026-12-03T04:00:00+00:00", "method": "revoke", "revoked": [
                {"model_id": "mdl_5b0c2e7a91d4", "certificate_id": "VBX-MC-2026-0D1E6B2A", "output_digest": _D}]},
        ],
        "hash_alg": "sha256", "key_id": "ed25519:3f2a9c",
    },
    "signature": "9f4c…",
}


class Disposal(Out):
    """An ended agreement's disposal: the steps done and, once complete, the signed record."""

    model_config = ConfigDict(json_schema_extra=example(DISPOSAL_EXAMPLE))
    agreement_id: str
    case: Literal["revoked", "expired"] | None = Field(description="how the agreement ended (none while in force)")
    state: Literal["none", "in_progress", "complete"]
    started_at: str | None
    steps_done: list[str]
    completed_at: str | None
    record: dict[str, Any] | None = Field(description="what was disposed of, how and when, with the fingerprints "
                                          "of what was disposed of; signed as b'veilbox-disposal|' + its "
                                          "canonical JSON")
    signature: str | None = Field(description="hex signature with the service's audit signing key (key_id)")
