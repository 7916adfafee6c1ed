"""An in-memory driver that runs one whole round: used by tests and the benchmark.

Every message crosses a JSON-able dict boundary (``wire=True``, the default) exactly as it would over HTTP.
``drop_at={stage: ids}`` makes those clients silent from that stage on: ``share_keys`` drops them after
they advertised keys, ``masked_input`` after they shared keys, ``unmask`` after they sent their masked
input. Times are wall-clock seconds of each party's own work (including its (de)serialisation).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mpc.errors import MpcError
from mpc.secagg.client import SecAggClient
from mpc.secagg.config import RoundConfig, Stage, new_round
from mpc.secagg.errors import RoundAborted
from mpc.secagg.messages import (
    ClientMessage,
    ForwardedShares,
    KeyRoster,
    ServerMessage,
    UnmaskRequest,
    parse_server_message,
)
from mpc.secagg.server import SecAggServer

_T = TypeVar("_T")
_M = TypeVar("_M", KeyRoster, ForwardedShares, UnmaskRequest)


@dataclass(frozen=True)
class RoundOutcome:
    """What a simulated round produced: the sum (``None`` if aborted) and who paid how much time."""

    config: RoundConfig
    total: NDArray[np.uint32] | None
    survivors: tuple[str, ...]
    abort_reason: str | None
    client_seconds: Mapping[str, float] = field(default_factory=dict)
    server_seconds: float = 0.0

    @property
    def aborted(self) -> bool:
        """True when the round produced no sum."""
        return self.total is None


class _Driver:
    """Carries messages between the server and the clients, timing each party's own work."""

    def __init__(self, config: RoundConfig, vectors: Mapping[str, NDArray[Any]], wire: bool) -> None:
        self.server = SecAggServer(config)
        self.clients = {name: SecAggClient(config, name) for name in config.participants}
        self.vectors = vectors
        self.wire = wire
        self.seconds: dict[str, float] = {}
        self.refused: set[str] = set()

    def timed(self, who: str, action: Callable[[], _T]) -> _T:
        start = time.perf_counter()
        try:
            return action()
        finally:
            self.seconds[who] = self.seconds.get(who, 0.0) + time.perf_counter() - start

    def publish(self, produce: Callable[[], ServerMessage]) -> ServerMessage | dict[str, Any]:
        message = self.timed("server", produce)
        return self.timed("server", message.to_json) if self.wire else message

    def read(self, name: str, published: ServerMessage | dict[str, Any], kind: type[_M]) -> _M:
        if isinstance(published, dict):
            data = published
            message = self.timed(name, lambda: parse_server_message(data))
        else:
            message = published
        assert isinstance(message, kind)
        return message

    def speak(self, name: str, make: Callable[[], ClientMessage]) -> None:
        try:
            message = self.timed(name, make)
        except RoundAborted:  # the client refuses to go on: to the server that is a dropout
            self.refused.add(name)
            return
        payload = self.timed(name, message.to_json) if self.wire else message
        self.timed("server", lambda: self.server.receive(payload))

    def stage(self, stage: Stage, cohort: list[str]) -> None:
        server = self.server
        if stage is Stage.ADVERTISE_KEYS:
            for name in cohort:
                self.speak(name, self.clients[name].advertise_keys)
        elif stage is Stage.SHARE_KEYS:
            roster = self.publish(server.key_roster)
            for name in cohort:
                self.speak(name, partial(self._share_keys, name, roster))
        elif stage is Stage.MASKED_INPUT:
            for name in cohort:
                forwarded = self.publish(partial(server.forwarded_shares, name))
                self.speak(name, partial(self._masked_input, name, forwarded))
        else:
            request = self.publish(server.unmask_request)
            for name in cohort:
                self.speak(name, partial(self._unmask, name, request))
        self.timed("server", server.close_stage)

    def _share_keys(self, name: str, roster: ServerMessage | dict[str, Any]) -> ClientMessage:
        return self.clients[name].share_keys(self.read(name, roster, KeyRoster))

    def _masked_input(self, name: str, forwarded: ServerMessage | dict[str, Any]) -> ClientMessage:
        shares = self.read(name, forwarded, ForwardedShares)
        return self.clients[name].masked_input(shares, self.vectors[name])

    def _unmask(self, name: str, request: ServerMessage | dict[str, Any]) -> ClientMessage:
        return self.clients[name].unmask(self.read(name, request, UnmaskRequest))


def simulate_round(
    inputs: Mapping[str, ArrayLike] | Sequence[ArrayLike],
    t: int,
    drop_at: Mapping[Stage | str, Iterable[str | int]] | None = None,
    *,
    modulus_bits: int = 32,
    neighbours: int | None = None,
    wire: bool = True,
) -> RoundOutcome:
    """Run one round over ``inputs`` (name → integer vector, or a list: names "0", "1", …), threshold ``t``.

    ``drop_at`` ids are names, or positions when ``inputs`` is a list.
    """
    named = dict(inputs) if isinstance(inputs, Mapping) else {str(i): v for i, v in enumerate(inputs)}
    names = list(named)
    vectors = {name: np.asarray(vector) for name, vector in named.items()}
    config = new_round(names, t, len(next(iter(vectors.values()))), modulus_bits, neighbours)
    drops = {
        Stage(stage): {names[i] if isinstance(i, int) else i for i in ids} for stage, ids in (drop_at or {}).items()
    }
    driver = _Driver(config, vectors, wire)
    server = driver.server
    gone: set[str] = set()
    for stage in (Stage.ADVERTISE_KEYS, Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.UNMASK):
        gone |= drops.get(stage, set()) | driver.refused
        driver.stage(stage, [name for name in names if name not in gone and name in server.expected()])
        if server.stage is Stage.ABORTED:
            break

    total: NDArray[np.uint32] | None = None
    reason: str | None = None
    if server.stage is Stage.DONE:
        total = driver.timed("server", server.result)
    else:
        try:
            server.result()
        except MpcError as exc:
            reason = exc.message
    server_seconds = driver.seconds.pop("server", 0.0)
    return RoundOutcome(config, total, server.survivors, reason, driver.seconds, server_seconds)
