"""A holder's side of a secure-aggregation round over HTTP: `join_round` drives an `mpc.secagg.SecAggClient`
through the gateway with the SDK (`veilbox.client.Client`).

    with Client(url, holder_token) as c:
        outcome = join_round(c, "sa-…", vector)          # uint32 words in [0, 2^m) of the round's length

The holder reads the round's public config (``GET /v1/secagg/rounds/{id}``), then for each stage posts its
message (`send`: one binary frame, the masked vector as packed uint32 words) and long-polls for what the server
publishes next (roster → its envelopes → the survivor list). Every check of the server's view is the protocol
client's (`mpc.secagg.client`): the roster must carry its own keys, the survivor list must include itself and have
at least t names, … — a server that breaks them gets no further message. The vector never leaves the process
unmasked; keys, seeds and shares live only in the `SecAggClient` object. The holder never sees the sum.

Helpers turn plain data into a round's input: `vector_from_npy` (integer words as they are, floats through
`FixedPoint`) and `vector_from_parquet` (column sums, fixed-point encoded). `decode_sum` reads a result.
``stop_before`` makes the holder go silent before a stage (tests and demos of dropouts).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mpc.secagg import (
    FRAME_MEDIA_TYPE,
    ClientMessage,
    FixedPoint,
    ForwardedShares,
    KeyRoster,
    ProtocolError,
    RoundAborted,
    RoundConfig,
    SecAggClient,
    Stage,
    UnmaskRequest,
    encode_frame,
    parse_server_message,
)
from veilbox.client import Client

__all__ = [
    "JoinOutcome",
    "decode_sum",
    "join_round",
    "round_config",
    "send",
    "vector_from_npy",
    "vector_from_parquet",
]

_M = TypeVar("_M", KeyRoster, ForwardedShares, UnmaskRequest)
LONG_POLL_S = 25.0


@dataclass(frozen=True)
class JoinOutcome:
    """How far a holder went: the stages whose message it sent and whether its input is in the sum."""

    round_id: str
    name: str
    sent: tuple[str, ...]
    survived: bool


def round_config(status: dict[str, Any]) -> RoundConfig:
    """The public `RoundConfig` from a round's status (``GET /v1/secagg/rounds/{id}``)."""
    return RoundConfig.model_validate(status["config"])


def _check_vector(vector: ArrayLike, config: RoundConfig) -> NDArray[Any]:
    array = np.asarray(vector)
    if array.shape != (config.vector_length,) or array.dtype.kind not in "iu":
        raise ValueError(f"the input must be an integer vector of length {config.vector_length}")
    if array.size and (int(array.min()) < 0 or int(array.max()) >= 1 << config.modulus_bits):
        raise ValueError(f"the input words must lie in [0, 2**{config.modulus_bits})")
    return array


def _await(client: Client, round_id: str, what: str, kind: type[_M], deadline: float) -> _M:
    """Long-poll ``GET .../{what}`` until the server publishes it; `RoundAborted` if the round ends first."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the round did not publish its {what} in time")
        view = client.secagg_published(round_id, what, wait=min(LONG_POLL_S, left))
        if view["ready"]:
            message = parse_server_message(view["message"])
            if not isinstance(message, kind):
                raise ProtocolError(f"the server published a {message.kind} where {what} was expected")
            return message
        if view["stage"] == Stage.ABORTED.value:
            raise RoundAborted(view.get("abort_reason") or "round aborted")
        if view["stage"] == Stage.DONE.value:
            raise ProtocolError(f"the round finished without this client (its {what} stage had closed)")


def send(client: Client, round_id: str, endpoint: str, message: ClientMessage) -> dict[str, Any]:
    """Post one protocol message as a binary frame (`mpc.secagg.encode_frame`: raw bytes, the masked vector as
    packed uint32 words — no base64, no JSON list) to ``keys``, ``shares``, ``masked`` or ``unmask``."""
    answer: dict[str, Any] = client.request(
        "POST", f"/v1/secagg/rounds/{round_id}/{endpoint}", content=encode_frame(message),
        headers={"Content-Type": FRAME_MEDIA_TYPE}).json()
    return answer


def join_round(
    client: Client,
    round_id: str,
    vector: ArrayLike | Callable[[RoundConfig], ArrayLike],
    *,
    name: str | None = None,
    timeout_s: float = 3600.0,
    stop_before: Stage | str | None = None,
    config: RoundConfig | None = None,
) -> JoinOutcome:
    """Take part in round ``round_id`` with ``vector`` (or a function of the round's config returning it).

    Raises `RoundAborted` if the round aborts, `ProtocolError`/`CiphertextInvalid` if the server's view breaks
    the protocol (the holder then stops), `veilbox.client.ApiError` for a refused message, `TimeoutError` after
    ``timeout_s``. ``stop_before`` (a stage) makes the holder go silent before sending that stage's message.
    """
    deadline = time.monotonic() + timeout_s
    cfg = config or round_config(client.secagg_round(round_id))
    if cfg.round_id != round_id:
        raise ProtocolError("the round's config names another round")
    me = name or client.me()["name"]
    x = _check_vector(vector(cfg) if callable(vector) else vector, cfg)
    stop = Stage(stop_before) if stop_before is not None else None
    protocol = SecAggClient(cfg, me)
    sent: list[str] = []

    def done(survived: bool = False) -> JoinOutcome:
        return JoinOutcome(round_id, me, tuple(sent), survived)

    if stop is Stage.ADVERTISE_KEYS:
        return done()
    send(client, round_id, "keys", protocol.advertise_keys())
    sent.append(Stage.ADVERTISE_KEYS.value)
    roster = _await(client, round_id, "keys", KeyRoster, deadline)
    if stop is Stage.SHARE_KEYS:
        return done()
    send(client, round_id, "shares", protocol.share_keys(roster))
    sent.append(Stage.SHARE_KEYS.value)
    forwarded = _await(client, round_id, "shares", ForwardedShares, deadline)
    if stop is Stage.MASKED_INPUT:
        return done()
    send(client, round_id, "masked", protocol.masked_input(forwarded, x))
    sent.append(Stage.MASKED_INPUT.value)
    request = _await(client, round_id, "survivors", UnmaskRequest, deadline)
    if stop is Stage.UNMASK:
        return done()
    send(client, round_id, "unmask", protocol.unmask(request))
    sent.append(Stage.UNMASK.value)
    return done(survived=True)


# --- inputs and outputs ------------------------------------------------------------------------------------------

def vector_from_npy(path: Path, config: RoundConfig, clip: float | None = None) -> NDArray[np.uint32]:
    """An ``.npy`` vector as the round's input: integer words as they are; floats clipped to ``[-clip, clip]``
    and fixed-point encoded for up to ``len(participants)`` clients (`FixedPoint`)."""
    array = np.load(path, allow_pickle=False)
    if array.dtype.kind in "iu":
        return _check_vector(array, config).astype(np.uint32)
    if clip is None:
        raise ValueError("a float vector needs --clip (its fixed-point bound)")
    return FixedPoint(clip, len(config.participants), config.modulus_bits).encode(array)


def vector_from_parquet(path: Path, columns: Sequence[str], config: RoundConfig, clip: float) -> NDArray[np.uint32]:
    """The sums of ``columns`` over the rows of a Parquet file, clipped to ``[-clip, clip]`` and fixed-point
    encoded for up to ``len(participants)`` clients (nulls count as 0)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if len(columns) != config.vector_length:
        raise ValueError(f"the round takes {config.vector_length} values; {len(columns)} columns were named")
    table = pq.read_table(path, columns=list(columns))
    sums = [pc.sum(pc.cast(table.column(c), "float64")).as_py() or 0.0 for c in columns]
    return FixedPoint(clip, len(config.participants), config.modulus_bits).encode(np.asarray(sums, dtype=np.float64))


def decode_sum(result: dict[str, Any]) -> NDArray[np.uint32]:
    """The released sum (``GET .../result``) as uint32 words."""
    if not result.get("ready"):
        raise ValueError("the round has no result yet")
    raw = base64.b64decode(result["sum"], validate=True)
    return np.frombuffer(raw, dtype=np.dtype("<u4")).astype(np.uint32)
