"""Responses of the secure-aggregation rounds (docs/api.md, "Secure aggregation")."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from gateway.contract import Out, example

ROUND_EXAMPLE: dict[str, Any] = {
    "id": "rnd_7f3a9c1e", "agreement_id": "agr_1b61737f85dc4169584d", "opened_by": "risk-lab",
    "config": {"round_id": "rnd_7f3a9c1e", "participants": ["city-tax-bureau", "holder-a", "holder-b"],
               "threshold": 2, "vector_length": 4, "modulus_bits": 32},
    "stage": "advertise_keys", "stage_timeout_s": 60, "deadline_in_s": 59.2, "waiting_for": 3, "survivors": [],
    "history": [], "abort_reason": None, "task": {"what": "sum"},
    "pending": ["city-tax-bureau", "holder-a", "holder-b"],
}


class Round(Out):
    """A round's public state; ``pending`` (who the current stage still waits for) for its opener only."""

    model_config = ConfigDict(json_schema_extra=example(ROUND_EXAMPLE))
    id: str
    agreement_id: str
    opened_by: str
    config: dict[str, Any] = Field(description="participants (their order fixes Shamir points), threshold, "
                                               "vector length, modulus bits")
    stage: str
    stage_timeout_s: int | float
    deadline_in_s: int | float | None = Field(description="null once the round is over")
    waiting_for: int
    survivors: list[str]
    history: list[Any]
    abort_reason: str | None
    task: dict[str, Any] | None
    pending: list[str] | None = Field(None, description="the opener only")


class Accepted(Out):
    model_config = ConfigDict(json_schema_extra=example(
        {"round_id": "rnd_7f3a9c1e", "accepted": "advertise_keys", "stage": "advertise_keys"}))
    round_id: str
    accepted: str = Field(description="the message kind accepted")
    stage: str


class Published(Out):
    """What a stage published once it closed (``ready``), or, before that, ``message: null``. The opener's
    ``GET .../result`` adds the sum once the round is done."""

    model_config = ConfigDict(json_schema_extra=example(
        {"round_id": "rnd_7f3a9c1e", "stage": "share_keys", "ready": True,
         "message": {"kind": "key_roster", "round_id": "rnd_7f3a9c1e", "keys": {}}, "abort_reason": None}))
    round_id: str
    stage: str
    ready: bool
    message: dict[str, Any] | None = None
    abort_reason: str | None = None


class RoundResult(Published):
    """The opener's ``GET .../result``: while the round runs, as `Published`; once done, the sum."""

    model_config = ConfigDict(json_schema_extra=example(
        {"round_id": "rnd_7f3a9c1e", "stage": "done", "ready": True, "sum": "AQAAAAIAAAADAAAABAAAAA==",
         "encoding": "uint32-le-base64", "vector_length": 4, "modulus_bits": 32,
         "survivors": ["city-tax-bureau", "holder-a", "holder-b"],
         "output_digest": "sha256:2f1c9b…"}))
    sum: str | None = Field(None, description="base64 of the little-endian uint32 words of the sum (mod 2^m)")
    encoding: str | None = None
    vector_length: int | None = None
    modulus_bits: int | None = None
    survivors: list[str] | None = None
    output_digest: str | None = None


_R = "rnd_7f3a9c1e"
OPEN_REQUEST: dict[str, Any] = {"agreement_id": "agr_1b61737f85dc4169584d",
                                "participants": ["city-tax-bureau", "holder-a", "holder-b"], "threshold": 2,
                                "vector_length": 4, "modulus_bits": 32, "stage_timeout_s": 60, "task": {"what": "sum"}}
#: One example message per participant endpoint (``sender`` is the authenticated principal).
MESSAGES: dict[str, dict[str, Any]] = {
    "keys": {"round_id": _R, "kind": "advertise_keys", "sender": "holder-a",
             "c_public": "<base64 32-byte X25519 key>", "s_public": "<base64 32-byte X25519 key>"},
    "shares": {"round_id": _R, "kind": "share_keys", "sender": "holder-a",
               "ciphertexts": {"city-tax-bureau": "<base64 envelope>", "holder-b": "<base64 envelope>"}},
    "masked": {"round_id": _R, "kind": "masked_input", "sender": "holder-a", "vector": "<base64 masked words>"},
    "unmask": {"round_id": _R, "kind": "unmask_shares", "sender": "holder-a",
               "b_shares": {"city-tax-bureau": "<base64 share>"}, "s_shares": {}},
}
