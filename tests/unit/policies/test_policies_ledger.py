"""The budget ledger: exact check-then-debit, all-or-nothing, idempotent refunds, no overspend under threads."""

from __future__ import annotations

import threading
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

import policies
from catalog.errors import (
    AGREEMENT_INACTIVE,
    ALREADY_EXISTS,
    BUDGET_EXHAUSTED,
    NOT_FOUND_OR_FORBIDDEN,
    POLICY_DENIED,
    DomainError,
)
from policies import Budget, ledger
from policies import _tables as t

World = Any  # the `world` fixture (tests/unit/policies/conftest.py)
BOTH = ["tax_income", "enterprise_registry"]


def spent(world: World, agreement_id: str) -> dict[str, Budget]:
    return {a.dataset: a.spent for a in ledger.accounts(world.engine, agreement_id)}


def test_charge_and_refund(world: World) -> None:
    ag = world.active()
    cost = Budget.parse("0.1", "1e-7")
    after = policies.charge(world.engine, ag.id, BOTH, cost, "job-1", now=world.now)
    assert after == {"enterprise_registry": Budget.parse("0.9", "9e-7"), "tax_income": Budget.parse("0.9", "9e-7")}
    assert policies.remaining(world.engine, ag.id) == after
    assert policies.refund(world.engine, "job-1", now=world.now) == cost
    assert policies.refund(world.engine, "job-1", now=world.now) is None  # idempotent
    assert all(s.is_zero for s in spent(world, ag.id).values())
    kinds = [(e.dataset, e.kind) for e in ledger.entries(world.engine, job_id="job-1")]
    assert sorted(kinds) == sorted([(d, k) for d in BOTH for k in ("debit", "refund")])


def test_exact_tenths_sum_to_the_whole(world: World) -> None:
    ag = world.active()
    for i in range(10):
        policies.charge(world.engine, ag.id, ["tax_income"], Budget.parse(0.1), f"j{i}", now=world.now)
    assert policies.remaining(world.engine, ag.id)["tax_income"].epsilon == 0
    with pytest.raises(DomainError) as e:
        policies.charge(world.engine, ag.id, ["tax_income"], Budget.parse("1e-300"), "j10", now=world.now)
    assert e.value.code == BUDGET_EXHAUSTED


def test_stored_as_exact_text(world: World) -> None:
    ag = world.active()
    policies.charge(world.engine, ag.id, ["tax_income"], Budget(Fraction(1, 3)), "j", now=world.now)
    with world.engine.connect() as conn:
        row = conn.execute(select(t.budget_accounts).where(t.budget_accounts.c.dataset == "tax_income")).one()
        entry = conn.execute(select(t.budget_entries.c.epsilon)).scalar_one()
    assert (row.epsilon_spent, row.epsilon_total, entry) == ("1/3", "1/1", "1/3")


def test_exhausted_on_any_dataset_spends_nothing(world: World) -> None:
    ag = world.active()
    policies.charge(world.engine, ag.id, ["tax_income"], Budget.parse("0.7"), "a", now=world.now)
    before = spent(world, ag.id)
    with pytest.raises(DomainError) as e:
        policies.charge(world.engine, ag.id, BOTH, Budget.parse("0.5"), "b", now=world.now)
    assert e.value.code == BUDGET_EXHAUSTED
    assert e.value.details == [{"reason": "budget.insufficient", "dataset": "tax_income",
                                "message": "the remaining privacy budget is smaller than the cost"}]
    assert spent(world, ag.id) == before
    assert ledger.entries(world.engine, job_id="b") == []
    with pytest.raises(DomainError) as e:  # delta alone can exhaust
        policies.charge(world.engine, ag.id, ["enterprise_registry"], Budget.parse(0, "2e-6"), "c", now=world.now)
    assert e.value.code == BUDGET_EXHAUSTED


def test_charge_refusals(world: World) -> None:
    ag = world.active()
    policies.charge(world.engine, ag.id, ["tax_income"], Budget.parse("0.1"), "a", now=world.now)
    with pytest.raises(DomainError) as e:
        policies.charge(world.engine, ag.id, ["tax_income"], Budget.parse("0.1"), "a", now=world.now)
    assert e.value.code == ALREADY_EXISTS
    with pytest.raises(DomainError) as e:
        policies.charge(world.engine, ag.id, ["social_insurance"], Budget.parse("0.1"), "b", now=world.now)
    assert e.value.code == POLICY_DENIED
    with pytest.raises(DomainError) as e:
        policies.charge(world.engine, "agr_missing", ["tax_income"], Budget.parse("0.1"), "c", now=world.now)
    assert e.value.code == NOT_FOUND_OR_FORBIDDEN
    assert spent(world, ag.id)["tax_income"] == Budget.parse("0.1")


@pytest.mark.parametrize("state", ["proposed", "suspended", "revoked", "expired"])
def test_inactive_agreements_are_never_charged(world: World, state: str) -> None:
    ag = world.create() if state == "proposed" else world.active()
    now = world.now
    if state == "suspended":
        policies.suspend(world.engine, world.owner, ag.id, now=now)
    elif state == "revoked":
        policies.revoke(world.engine, world.owner, ag.id, now=now)
    elif state == "expired":
        now = world.valid_until
    with pytest.raises(DomainError) as e:
        policies.charge(world.engine, ag.id, ["tax_income"], Budget.parse("0.1"), "x", now=now)
    assert e.value.code == AGREEMENT_INACTIVE
    assert all(s.is_zero for s in spent(world, ag.id).values())


def test_refund_unknown_job_is_nothing(world: World) -> None:
    assert policies.refund(world.engine, "never-charged", now=world.now) is None


def test_status_view(world: World) -> None:
    ag = world.active()
    policies.charge(world.engine, ag.id, ["tax_income"], Budget.parse("0.25", "1e-7"), "a", now=world.now)
    policies.charge(world.engine, ag.id, ["enterprise_registry"], Budget.parse("0.5"), "b", now=world.now)
    st_ = ledger.status(world.engine, ag.id)
    assert st_.total == Budget.parse(1, "1e-6")
    assert st_.spent == Budget.parse("0.5", "1e-7")  # component-wise most-spent dataset
    body = st_.as_json()
    assert body["epsilon_total"] == 1.0 and body["epsilon_spent"] == 0.5
    assert body["exact"] == {"epsilon_total": "1", "epsilon_spent": "0.5", "delta_total": "0.000001",
                             "delta_spent": "0.0000001"}
    assert body["datasets"]["tax_income"]["remaining"] == {"epsilon": "0.75", "delta": "0.0000009"}
    assert policies.read_budget(world.engine, world.regulator, ag.id, now=world.now).spent == st_.spent
    with pytest.raises(DomainError) as e:
        policies.read_budget(world.engine, world.stranger, ag.id, now=world.now)
    assert e.value.code == NOT_FOUND_OR_FORBIDDEN


# --- invariants -------------------------------------------------------------------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("charge"),
            st.integers(0, 7),
            st.fractions(min_value=0, max_value=Fraction(3, 4), max_denominator=12),
            st.sampled_from([Fraction(0), Fraction(1, 10**7), Fraction(3, 10**7)]),
            st.sampled_from([("tax_income",), ("enterprise_registry",), ("enterprise_registry", "tax_income")]),
        ),
        st.tuples(st.just("refund"), st.integers(0, 7)),
    ),
    max_size=20,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_ledger_invariants(world: World, ops: list[tuple[Any, ...]]) -> None:
    """Any sequence of charges and refunds keeps 0 ≤ spent ≤ total, matches a model, and refunds once."""
    ag = world.active()
    total = Budget.parse(1, "1e-6")
    model: dict[str, Budget] = {ds: Budget.zero() for ds in BOTH}
    charged: dict[str, tuple[Budget, tuple[str, ...]]] = {}
    refunded: set[str] = set()
    for op in ops:
        job = f"{ag.id}-{op[1]}"
        if op[0] == "charge":
            cost, datasets = Budget(op[2], op[3]), op[4]
            fits = all((model[ds] + cost).fits_in(total) for ds in datasets)
            try:
                policies.charge(world.engine, ag.id, datasets, cost, job, now=world.now)
            except DomainError as e:
                assert e.code == (ALREADY_EXISTS if job in charged else BUDGET_EXHAUSTED)
                assert job in charged or not fits
            else:
                assert job not in charged and fits
                charged[job] = (cost, datasets)
                for ds in datasets:
                    model[ds] = model[ds] + cost
        else:
            got = policies.refund(world.engine, job, now=world.now)
            if job in charged and job not in refunded:
                cost, datasets = charged[job]
                assert got == cost
                refunded.add(job)
                for ds in datasets:
                    model[ds] = model[ds] - cost
            else:
                assert got is None
        accounts = {a.dataset: a for a in ledger.accounts(world.engine, ag.id)}
        for ds in BOTH:
            assert accounts[ds].spent == model[ds]
            assert accounts[ds].spent.fits_in(accounts[ds].total)
            assert Budget.zero().fits_in(accounts[ds].spent)


def test_64_concurrent_debits_never_overspend(world: World) -> None:
    """64 threads race to charge 1/3 each out of ε = 10 on a SQLite file: exactly floor(10 / (1/3)) = 30 win."""
    ag = world.active(budget={"epsilon": 10, "delta": "1e-6"})
    cost = Budget(Fraction(1, 3), Fraction(1, 10**7))
    barrier = threading.Barrier(64)
    results: list[str] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        barrier.wait()
        try:
            policies.charge(world.engine, ag.id, BOTH, cost, f"job-{i}", now=world.now)
            outcome = "ok"
        except DomainError as e:
            outcome = e.code
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(64)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    # δ caps at 10 charges (1e-6 / 1e-7), ε at 30: the tighter component decides
    expected = min(Fraction(10) // cost.epsilon, Fraction(1, 10**6) // cost.delta)
    assert results.count("ok") == expected == 10
    assert set(results) == {"ok", BUDGET_EXHAUSTED}
    for a in ledger.accounts(world.engine, ag.id):
        assert a.spent == cost.times(int(expected))


def test_64_concurrent_debits_epsilon_only(world: World) -> None:
    ag = world.active(budget={"epsilon": 10, "delta": 0})
    cost = Budget(Fraction(1, 3))
    barrier = threading.Barrier(64)
    ok = []

    def worker(i: int) -> None:
        barrier.wait()
        try:
            policies.charge(world.engine, ag.id, ["tax_income"], cost, f"e-{i}", now=world.now)
            ok.append(i)
        except DomainError as e:
            assert e.code == BUDGET_EXHAUSTED

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(64)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(ok) == 30 == Fraction(10) // cost.epsilon
    assert policies.remaining(world.engine, ag.id)["tax_income"] == Budget(Fraction(0))


def test_concurrent_refunds_refund_once(world: World) -> None:
    ag = world.active()
    cost = Budget.parse("0.5")
    policies.charge(world.engine, ag.id, BOTH, cost, "r", now=world.now)
    barrier = threading.Barrier(16)
    got: list[Budget | None] = []

    def worker() -> None:
        barrier.wait()
        got.append(policies.refund(world.engine, "r", now=world.now))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert got.count(cost) == 1 and got.count(None) == 15
    assert all(s.is_zero for s in spent(world, ag.id).values())
