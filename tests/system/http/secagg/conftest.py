"""A service with an operator under an active `train` agreement that names five holder principals, and helpers that
run holders as threads through `veilbox.secagg_client.join_round` over real HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from gateway.services.rounds import RoundRegistry, rounds_for
from mpc.secagg import Stage
from veilbox.client import Client
from veilbox.secagg_client import JoinOutcome, join_round

HOLDERS = ("holder-a", "holder-b", "holder-c", "holder-d", "holder-e")
LENGTH = 64


@dataclass
class World:
    parties: Any
    operator: Client
    agreement_id: str
    holders: dict[str, Client]
    stranger: Client

    @property
    def registry(self) -> RoundRegistry:
        return rounds_for(self.parties.service.ctx)

    def open(self, threshold: int = 3, length: int = LENGTH, **kw: Any) -> dict[str, Any]:
        return self.operator.secagg_open(self.agreement_id, list(HOLDERS), threshold, length, **kw)

    names = HOLDERS

    def inputs(self, length: int = LENGTH, seed: int = 0) -> dict[str, np.ndarray]:
        return inputs(length, seed)

    def run(self, round_id: str, vectors: dict[str, np.ndarray], **kw: Any) -> Run:
        return run_holders(self, round_id, vectors, **kw)

    @staticmethod
    def expected(vectors: dict[str, np.ndarray], names: list[str] | tuple[str, ...]) -> np.ndarray:
        total = np.zeros_like(next(iter(vectors.values())), dtype=np.uint64)
        for n in names:
            total += vectors[n]
        return (total % (1 << 32)).astype(np.uint32)


@pytest.fixture
def world(parties: Any) -> Iterator[World]:
    ag = parties.agreement(holders=list(HOLDERS))  # participants must be parties to the agreement
    roles = ("bank", "bank", "owner", "bank", "operator")
    holders = {name: parties.service.principal(name, role) for name, role in zip(HOLDERS, roles, strict=True)}
    stranger = parties.service.principal("outsider-bank", "bank")
    yield World(parties, parties.operator, ag["id"], holders, stranger)
    for c in (*holders.values(), stranger):
        c.close()


def inputs(length: int = LENGTH, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic test inputs (test data only; nothing here is noise or a mask)."""
    return {name: (np.arange(length, dtype=np.uint64) * (i + 3) + 1000 * (seed + i)).astype(np.uint32)
            for i, name in enumerate(HOLDERS)}


@dataclass
class Run:
    outcomes: dict[str, JoinOutcome] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


def run_holders(world: World, round_id: str, vectors: dict[str, np.ndarray],
                stop_before: dict[str, Stage] | None = None, absent: tuple[str, ...] = (),
                closer: bool = True, timeout_s: float = 120.0) -> Run:
    """Run every holder (but ``absent``) in a thread; with ``closer`` the operator closes a stage as soon as
    only silent holders are pending (what a deadline would do, without waiting for it)."""
    run = Run()
    run.finished |= set(absent)

    def holder(name: str) -> None:
        try:
            run.outcomes[name] = join_round(world.holders[name], round_id, vectors[name], timeout_s=timeout_s,
                                            stop_before=(stop_before or {}).get(name))
        except BaseException as exc:  # reported to the test
            run.errors[name] = exc
        finally:
            with run.lock:
                run.finished.add(name)

    threads = [threading.Thread(target=holder, args=(n,), daemon=True) for n in HOLDERS if n not in absent]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = any(t.is_alive() for t in threads)
        if closer:
            if not close_if_only_silent_pending(world, round_id, run) and not alive:
                break
        elif not alive:
            break
        time.sleep(0.02)
    for t in threads:
        t.join(timeout=5)
    return run


def close_if_only_silent_pending(world: World, round_id: str, run: Run) -> bool:
    """Close the stage if only silent holders are pending; ``False`` once the round is over."""
    with run.lock:  # read before the status: whatever these holders sent has arrived
        silent = set(run.finished)
    st = world.operator.secagg_round(round_id)
    if st["stage"] in ("done", "aborted"):
        return False
    pending = set(st["pending"])
    if pending and pending <= silent:
        world.operator.secagg_close(round_id)
    return True


def wait_for(predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)
