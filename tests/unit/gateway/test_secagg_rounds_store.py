"""Secure-aggregation rounds live in the store: any gateway context serves any call of a round, a restart loses
no round, an aborted round is audited once and releases nothing, and concurrent messages are never lost. Runs on
SQLite and PostgreSQL (tests/unit/gateway is in ``BOTH_STORES``)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from catalog.errors import DomainError
from gateway import _tables as t
from gateway.context import AppContext, init_home, open_context
from gateway.services.rounds import RoundRegistry, rounds_for
from mpc.secagg import RoundConfig, SecAggClient, Stage, parse_server_message
from vocab.actions import AuditAction

OPENER = "risk-lab"
AGREEMENT = "ag_rounds"
L = 16


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _names(n: int) -> list[str]:
    return [f"holder-{i:02d}" for i in range(n)]


def _vectors(names: list[str]) -> dict[str, np.ndarray]:
    """Deterministic test inputs (test data only; nothing here is noise or a mask)."""
    return {name: (np.arange(L, dtype=np.uint64) * (i + 3) + 1000 * i).astype(np.uint32)
            for i, name in enumerate(names)}


def _expected(vectors: dict[str, np.ndarray], names: list[str] | tuple[str, ...]) -> np.ndarray:
    total = np.zeros(L, dtype=np.uint64)
    for n in names:
        total += vectors[n]
    return (total % (1 << 32)).astype(np.uint32)


def _events(ctx: AppContext, action: str) -> list[dict[str, Any]]:
    return [{**e, "details": json.loads(e["details"])} for e in ctx.audit.iter_all() if e["action"] == action]


def _entries(ctx: AppContext, round_id: str, part: str) -> int:
    with ctx.engine.connect() as conn:
        e = t.secagg_round_entries.c
        return conn.execute(select(func.count()).select_from(t.secagg_round_entries)
                            .where(e.round_id == round_id, e.part == part)).scalar_one()


@pytest.fixture
def home(settings):
    init_home(settings)
    opened: list[AppContext] = []

    def open_() -> AppContext:
        ctx = open_context(settings)
        opened.append(ctx)
        return ctx

    yield open_
    for ctx in opened:
        ctx.close()


class Driver:
    """Participants' protocol clients; each call goes through whichever registry ``via`` picks."""

    def __init__(self, config: RoundConfig, names: list[str]) -> None:
        self.config, self.names = config, names
        self.clients = {n: SecAggClient(config, n) for n in names}
        self.vectors = _vectors(names)

    def keys(self, reg: RoundRegistry, name: str) -> None:
        reg.submit(self.config.round_id, name, "keys", self.clients[name].advertise_keys().to_json())

    def shares(self, reg: RoundRegistry, name: str) -> None:
        roster = reg.publish(self.config.round_id, name, "keys").message
        assert roster is not None
        reg.submit(self.config.round_id, name, "shares",
                   self.clients[name].share_keys(parse_server_message(roster.to_json())).to_json())

    def masked(self, reg: RoundRegistry, name: str) -> None:
        forwarded = reg.publish(self.config.round_id, name, "shares").message
        assert forwarded is not None
        message = self.clients[name].masked_input(parse_server_message(forwarded.to_json()), self.vectors[name])
        reg.submit(self.config.round_id, name, "masked", message.to_json())

    def unmask(self, reg: RoundRegistry, name: str) -> None:
        request = reg.publish(self.config.round_id, name, "survivors").message
        assert request is not None
        reg.submit(self.config.round_id, name, "unmask",
                   self.clients[name].unmask(parse_server_message(request.to_json())).to_json())


def _open(reg: RoundRegistry, names: list[str], threshold: int = 3, timeout: float = 300.0) -> RoundConfig:
    return reg.open(OPENER, AGREEMENT, names, threshold, L, stage_timeout_s=timeout).config


def test_any_context_serves_any_call_of_a_round(home) -> None:
    """(a) A round opened through one context is continued — messages, roster, close, result — through another
    over the same store, every call alternating between the two."""
    a, b = rounds_for(home()), rounds_for(home())
    names = _names(5)
    config = _open(a, names)
    d = Driver(config, names)

    def via(i: int) -> RoundRegistry:
        return (a, b)[i % 2]

    for i, n in enumerate(names):
        d.keys(via(i), n)
    for i, n in enumerate(names):
        d.shares(via(i + 1), n)
    survivors = names[:4]
    for i, n in enumerate(survivors):
        d.masked(via(i), n)
    closed, rnd = b.close(config.round_id, OPENER)  # the opener ends the masked stage on the other context
    assert closed == [{"stage": "masked_input", "by": "operator", "received": 4, "next": "unmask"}]
    assert rnd.stage is Stage.UNMASK and a.get(config.round_id, OPENER).survivors == tuple(survivors)
    for i, n in enumerate(survivors):
        d.unmask(via(i + 1), n)
    for reg in (a, b):
        released = reg.result(config.round_id, OPENER)
        assert np.array_equal(released.total, _expected(d.vectors, survivors))  # type: ignore[union-attr]
        assert released.survivors == tuple(survivors)  # type: ignore[union-attr]
    st = a.status(a.get(config.round_id, OPENER), OPENER)
    assert [h["by"] for h in st["history"]] == ["all_arrived", "all_arrived", "operator", "all_arrived"]
    ctx = home()
    stages = _events(ctx, AuditAction.SECAGG_STAGE)
    assert [e["details"]["stage"] for e in stages] == ["advertise_keys", "share_keys", "masked_input", "unmask"]
    assert all(e["details"]["round_id"] == config.round_id and e["agreement_id"] == AGREEMENT for e in stages)
    assert _events(ctx, AuditAction.SECAGG_ABORT) == []
    for part in ("envelopes", "masked", "revealed"):  # the sum is out: no input or share is kept at rest
        assert _entries(ctx, config.round_id, part) == 0
    assert ctx.audit.verify().ok


def test_a_restarted_gateway_continues_the_round_to_the_sum(home) -> None:
    """(b) Each stage runs on a fresh context (the previous one closed, as a restarted gateway): nothing is lost."""
    names = _names(5)
    ctx = home()
    config = _open(rounds_for(ctx), names)
    d = Driver(config, names)
    for step in (d.keys, d.shares, d.masked, d.unmask):
        ctx.close()
        ctx = home()
        for n in names:
            step(rounds_for(ctx), n)
    ctx.close()
    reg = rounds_for(home())
    released = reg.result(config.round_id, OPENER)
    assert np.array_equal(released.total, _expected(d.vectors, names))  # type: ignore[union-attr]
    assert [r.id for r in reg.visible(names[0])] == [config.round_id]


def test_a_round_aborted_by_its_deadline_is_audited_once_and_releases_nothing(home) -> None:
    """(c) The stored deadline passes (fake clock, no sleep); another context notices it first: exactly one
    ``secagg.abort`` entry names the round and the reason, the masked inputs held are dropped from the store and
    the opener gets nothing."""
    clock = FakeClock()
    a, b = rounds_for(home()), rounds_for(home())
    a.clock = b.clock = clock
    names = _names(5)
    config = _open(a, names, threshold=3, timeout=60)
    d = Driver(config, names)
    for n in names:
        d.keys(a, n)
    for n in names:
        d.shares(a, n)
    for n in names[:2]:  # two of five masked inputs: below the threshold of three
        d.masked(a, n)
    ctx = home()
    assert _entries(ctx, config.round_id, "masked") == 2
    clock.now += 61
    st = b.status(b.get(config.round_id, names[4]), names[4])
    assert st["stage"] == "aborted" and "fewer than the threshold" in st["abort_reason"]
    for reg in (a, b):  # every later call, on either context, sees the same aborted round
        with pytest.raises(DomainError) as refused:
            reg.result(config.round_id, OPENER)
        assert refused.value.code.name == "INVALID_REQUEST"
        assert [d_["reason"] for d_ in refused.value.details] == ["secagg.aborted"]
        reg.visible(OPENER)
        reg.get(config.round_id, OPENER)
    aborts = _events(ctx, AuditAction.SECAGG_ABORT)
    assert len(aborts) == 1
    (entry,) = aborts
    assert entry["details"]["round_id"] == config.round_id and entry["details"]["by"] == "deadline"
    assert "fewer than the threshold" in entry["details"]["reason"] and entry["output_digest"] is None
    assert entry["agreement_id"] == AGREEMENT and entry["role"] == "system"
    for part in ("envelopes", "masked", "revealed"):
        assert _entries(ctx, config.round_id, part) == 0
    assert ctx.audit.verify().ok


def test_an_aborted_round_by_its_opener_is_audited_once(home) -> None:
    reg = rounds_for(home())
    names = _names(5)
    config = _open(reg, names)
    d = Driver(config, names)
    for n in names[:2]:
        d.keys(reg, n)
    closed, rnd = reg.close(config.round_id, OPENER)
    assert rnd.stage is Stage.ABORTED and closed[0]["by"] == "operator"
    (entry,) = _events(home(), AuditAction.SECAGG_ABORT)
    assert entry["details"]["by"] == "operator" and entry["details"]["round_id"] == config.round_id


def test_concurrent_messages_are_never_lost(home) -> None:
    """(d) Every participant sends each stage's message at once, from its own thread, through one of two
    contexts: every message is kept, each stage closes exactly once, and the sum is right."""
    names = _names(8)
    regs = [rounds_for(home()), rounds_for(home())]
    config = _open(regs[0], names, threshold=5)
    d = Driver(config, names)
    for step in (d.keys, d.shares, d.masked, d.unmask):
        errors: list[BaseException] = []
        start = threading.Barrier(len(names))

        def send(i: int, name: str, step: Callable[[RoundRegistry, str], None] = step) -> None:
            try:
                start.wait()
                step(regs[i % 2], name)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=send, args=(i, n)) for i, n in enumerate(names)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=120)
        assert errors == []
    rnd = regs[1].get(config.round_id, OPENER)
    assert rnd.stage is Stage.DONE
    assert [h["received"] for h in rnd.history] == [8, 8, 8, 8]
    assert [h["by"] for h in rnd.history] == ["all_arrived"] * 4
    released = regs[0].result(config.round_id, OPENER)
    assert np.array_equal(released.total, _expected(d.vectors, names))  # type: ignore[union-attr]
    ctx = home()
    assert len(_events(ctx, AuditAction.SECAGG_STAGE)) == 4
    assert ctx.audit.verify().ok


def test_open_rounds_are_counted_in_the_store(home) -> None:
    """The limits count the rounds every context opened, and finished rounds are forgotten after retention."""
    clock = FakeClock()
    a, b = rounds_for(home()), rounds_for(home())
    a.clock = b.clock = clock
    a.max_open_per_opener = b.max_open_per_opener = 2
    names = _names(3)
    first = _open(a, names)
    _open(b, names)
    with pytest.raises(DomainError) as refused:
        _open(a, names)
    assert refused.value.code.name == "QUOTA_EXCEEDED"
    b.close(first.round_id, OPENER)  # too few keys: aborted, no longer open
    _open(a, names)
    clock.now += a.retain_s + 1
    a.visible(OPENER)  # the sweep forgets the finished round, enforcing the others' deadlines first
    with pytest.raises(DomainError):
        b.get(first.round_id, OPENER)


def test_the_rounds_migration_up_and_down(tmp_path) -> None:
    """0011 adds the three round tables on a branch of its own; its downgrade removes only them and upgrading
    again gives exactly the declared schema (the PostgreSQL DDL compiles too)."""
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import inspect
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateTable

    from catalog.store import make_engine
    from gateway import schema

    mine = {"secagg_rounds", "secagg_round_members", "secagg_round_entries"}
    e = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    schema.upgrade(e)
    before = set(inspect(e).get_table_names())
    assert mine <= before
    cfg = schema.alembic_config()
    with e.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0011_secagg_rounds@-1")
    assert set(inspect(e).get_table_names()) == before - mine
    schema.upgrade(e)
    with e.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), schema.target_metadata) == []
    for table in (t.secagg_rounds, t.secagg_round_members, t.secagg_round_entries):
        assert "CREATE TABLE" in str(CreateTable(table).compile(dialect=postgresql.dialect()))


def test_a_deadline_closure_and_the_openers_close_in_one_call(home) -> None:
    """The masked stage's deadline has passed when the opener closes: the same transaction closes it (``unmask``
    begins) and then the unmask stage, which no one has answered yet — aborted, each closure audited once."""
    clock = FakeClock()
    reg = rounds_for(home())
    reg.clock = clock
    names = _names(5)
    config = _open(reg, names, timeout=60)
    d = Driver(config, names)
    for step in (d.keys, d.shares):
        for n in names:
            step(reg, n)
    for n in names[:4]:
        d.masked(reg, n)
    clock.now += 61
    closed, rnd = reg.close(config.round_id, OPENER)
    assert [c["by"] for c in closed] == ["deadline", "operator"] and rnd.stage is Stage.ABORTED
    assert "revealed" in (rnd.abort_reason() or "")
    ctx = home()
    assert [e["details"]["stage"] for e in _events(ctx, AuditAction.SECAGG_STAGE)][-1] == "masked_input"
    assert len(_events(ctx, AuditAction.SECAGG_ABORT)) == 1
    assert _entries(ctx, config.round_id, "masked") == 0


def test_a_waiting_call_is_woken_by_the_closure_not_by_polling(home) -> None:
    """A call waiting on a round parks on its event and is woken by the commit that closes the stage: through the
    same registry on SQLite, through another context's registry by LISTEN/NOTIFY on PostgreSQL — well before the
    periodic re-check: nothing here re-reads the store, only the event can end the wait."""
    a, b = rounds_for(home()), rounds_for(home())
    names = _names(3)
    config = _open(a, names)
    d = Driver(config, names)
    for n in names[:2]:
        d.keys(a, n)
    waiter = b if a.engine is not None and a.engine.dialect.name == "postgresql" else a

    async def wait_for_roster() -> bool:
        with waiter.signals.watch(config.round_id) as changed:
            if waiter.signals.url is not None:  # the listener must be listening before the closure commits
                assert await asyncio.to_thread(waiter.signals.listening_ready.wait, 60.0)
            assert not changed.is_set()
            await asyncio.to_thread(d.keys, a, names[2])  # the last key closes the stage, in another thread
            await asyncio.wait_for(changed.wait(), 60.0)
            return changed.is_set()

    assert asyncio.run(wait_for_roster())
    assert waiter.publish(config.round_id, names[0], "keys").ready
