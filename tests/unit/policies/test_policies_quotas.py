"""Metering: atomic quota increments, per-subject verification limits, usage and billing."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from fractions import Fraction
from typing import Any

import pytest

import policies
from catalog.errors import INVALID_REQUEST, NOT_FOUND_OR_FORBIDDEN, POLICY_DENIED, QUOTA_EXCEEDED, DomainError
from policies import Action, Budget, quotas

World = Any  # the `world` fixture (tests/unit/policies/conftest.py)
DAY = dt.timedelta(days=1)
PREVIEW: dict[str, Any] = {"datasets": ["tax_income"], "columns": {"tax_income": ["age"]}}
VERIFY: dict[str, Any] = {"datasets": ["tax_income"], "columns": {"tax_income": ["monthly_income"]},
                          "consent_ref": "c-1"}


def subject(raw: str) -> str:
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


def codes(err: DomainError) -> list[str]:
    return [d["reason"] for d in err.details]


def test_calls_per_day(world: World) -> None:
    ag = world.active(quotas={"calls_per_day": 3})
    for _ in range(3):
        policies.authorize(world.engine, world.bank, Action.QUERY_PREVIEW, ag.id, now=world.now, **PREVIEW)
    with pytest.raises(DomainError) as e:
        policies.authorize(world.engine, world.bank, Action.QUERY_PREVIEW, ag.id, now=world.now, **PREVIEW)
    assert e.value.code == QUOTA_EXCEEDED and codes(e.value) == ["quota.calls_per_day"]
    policies.authorize(world.engine, world.bank, Action.QUERY_PREVIEW, ag.id, now=world.now + DAY, **PREVIEW)
    # reads are not metered
    for _ in range(5):
        policies.authorize(world.engine, world.bank, Action.BUDGET_READ, ag.id, now=world.now)


def test_denied_calls_are_not_metered(world: World) -> None:
    ag = world.active(quotas={"calls_per_day": 1})
    with pytest.raises(DomainError) as e:
        policies.authorize(world.engine, world.bank, Action.QUERY_PREVIEW, ag.id, now=world.now,
                           datasets=["tax_income"], columns={"tax_income": ["id_number"]})
    assert e.value.code == POLICY_DENIED
    policies.authorize(world.engine, world.bank, Action.QUERY_PREVIEW, ag.id, now=world.now, **PREVIEW)


def test_verify_per_subject_per_day(world: World) -> None:
    ag = world.active(quotas={"verify_per_subject_per_day": 2, "distinct_params_per_subject": 10})
    alice, bob = subject("P0001"), subject("P0002")
    for _ in range(2):
        policies.authorize(world.engine, world.bank, Action.VERIFY_CHECK, ag.id, now=world.now,
                           subject_hash=alice, params={"threshold": 8000}, **VERIFY)
    with pytest.raises(DomainError) as e:
        policies.authorize(world.engine, world.bank, Action.VERIFY_CHECK, ag.id, now=world.now,
                           subject_hash=alice, params={"threshold": 8000}, **VERIFY)
    assert e.value.code == QUOTA_EXCEEDED and codes(e.value) == ["quota.verify_per_subject_per_day"]
    policies.authorize(world.engine, world.bank, Action.VERIFY_CHECK, ag.id, now=world.now,
                       subject_hash=bob, params={"threshold": 8000}, **VERIFY)
    policies.authorize(world.engine, world.bank, Action.VERIFY_CHECK, ag.id, now=world.now + DAY,
                       subject_hash=alice, params={"threshold": 8000}, **VERIFY)


def test_distinct_params_per_subject_window(world: World) -> None:
    ag = world.active(quotas={"verify_per_subject_per_day": 100, "distinct_params_per_subject": 3,
                              "distinct_params_window_days": 30})
    alice = subject("P0001")

    def check(threshold: int, now: dt.datetime, who: str = alice) -> None:
        policies.authorize(world.engine, world.bank, Action.VERIFY_CHECK, ag.id, now=now, subject_hash=who,
                           params={"threshold": threshold}, **VERIFY)

    for t in (8000, 9000, 10000):
        check(t, world.now)
    check(9000, world.now)  # a value already used does not count again
    with pytest.raises(DomainError) as e:
        check(8500, world.now)  # a binary search needs a fourth value
    assert e.value.code == QUOTA_EXCEEDED and codes(e.value) == ["quota.distinct_params_per_subject"]
    check(8500, world.now, subject("P0002"))  # other subjects unaffected
    with pytest.raises(DomainError):
        check(8500, world.now + dt.timedelta(days=29))
    check(8500, world.now + dt.timedelta(days=31))  # the window has moved on


def test_verify_needs_subject_and_consent(world: World) -> None:
    ag = world.active()
    with pytest.raises(DomainError) as e:
        policies.authorize(world.engine, world.bank, Action.VERIFY_CHECK, ag.id, now=world.now,
                           params={"threshold": 1}, **VERIFY)
    assert e.value.code == INVALID_REQUEST
    with pytest.raises(DomainError) as e:
        policies.authorize(world.engine, world.bank, Action.VERIFY_CHECK, ag.id, now=world.now,
                           subject_hash=subject("x"), params={"threshold": 1}, datasets=["tax_income"],
                           columns={"tax_income": ["monthly_income"]})
    assert e.value.code == POLICY_DENIED and codes(e.value) == ["consent.missing"]
    with pytest.raises(DomainError) as e:  # operators do not verify
        ops = world.active(grantee=world.operator.name)
        policies.authorize(world.engine, world.operator, Action.VERIFY_CHECK, ops.id, now=world.now,
                           subject_hash=subject("x"), params={"threshold": 1}, **VERIFY)
    assert e.value.code == POLICY_DENIED and codes(e.value) == ["role.not_allowed"]


def test_scores_per_day(world: World) -> None:
    ag = world.active(quotas={"scores_per_day": 2})
    for _ in range(2):
        policies.authorize(world.engine, world.bank, Action.MODEL_SCORE, ag.id, now=world.now,
                           datasets=["tax_income"])
    with pytest.raises(DomainError) as e:
        policies.authorize(world.engine, world.bank, Action.MODEL_SCORE, ag.id, now=world.now,
                           datasets=["tax_income"])
    assert codes(e.value) == ["quota.scores_per_day"]


def test_concurrent_calls_never_exceed_the_quota(world: World) -> None:
    ag = world.active(quotas={"calls_per_day": 20})
    barrier = threading.Barrier(48)
    ok: list[int] = []
    refused: list[str] = []

    def worker(i: int) -> None:
        barrier.wait()
        try:
            quotas.consume(world.engine, ag, world.bank.name, ("call",), now=world.now)
            ok.append(i)
        except DomainError as e:
            refused.append(e.code)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(48)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(ok) == 20 and refused == [QUOTA_EXCEEDED] * 28


def _race(n: int, call: Any) -> tuple[list[int], list[str]]:
    barrier = threading.Barrier(n)
    ok: list[int] = []
    refused: list[str] = []

    def worker(i: int) -> None:
        barrier.wait()
        try:
            call(i)
            ok.append(i)
        except DomainError as e:
            refused.append(e.code)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return ok, refused


def test_racing_checks_on_one_subject_never_exceed_its_caps(world: World) -> None:
    """Concurrent checks of one subject with distinct parameter values: the per-subject verification quota and the
    distinct-value cap each hold exactly (each meter one upsert; on PostgreSQL the verify row's lock serialises the
    parameter cap), and every refused check leaves no trace."""
    ag = world.active(quotas={"verify_per_subject_per_day": 6, "distinct_params_per_subject": 4})
    alice = subject("P0001")
    digests = [quotas.params_digest({"threshold": 1000 * (i + 1)}) for i in range(16)]

    def check(digest: str) -> None:
        quotas.consume(world.engine, ag, world.bank.name, ("call", "verify", "param"), now=world.now,
                       subject_hash=alice, param_hash=digest)

    ok, refused = _race(16, lambda i: check(digests[i]))
    assert len(ok) == 4 and refused == [QUOTA_EXCEEDED] * 12
    snap = quotas.snapshot(world.engine, ag, world.bank.name, now=world.now, subject_hash=alice)
    assert (snap.calls_today, snap.verifies_subject_today, snap.distinct_params) == (4, 4, 4)
    # the values already seen pass again until the per-subject quota (6) is used up
    again, refused = _race(8, lambda i: check(digests[ok[i % 4]]))
    assert len(again) == 2 and refused == [QUOTA_EXCEEDED] * 6
    snap = quotas.snapshot(world.engine, ag, world.bank.name, now=world.now, subject_hash=alice)
    assert (snap.calls_today, snap.verifies_subject_today, snap.distinct_params) == (6, 6, 4)


def test_a_value_seen_before_the_window_counts_as_new(world: World) -> None:
    ag = world.active(quotas={"verify_per_subject_per_day": 100, "distinct_params_per_subject": 2,
                              "distinct_params_window_days": 30})
    alice = subject("P0001")
    d1, d2, d3 = (quotas.params_digest({"threshold": v}) for v in (1, 2, 3))

    def use(d: str, now: dt.datetime) -> None:
        quotas.consume(world.engine, ag, world.bank.name, ("verify", "param"), now=now, subject_hash=alice,
                       param_hash=d)

    use(d1, world.now)
    use(d2, world.now + 20 * DAY)
    use(d1, world.now + 25 * DAY)  # inside the window: keeps its first use (day 0)
    late = world.now + 31 * DAY  # d1 has left the window, d2 has not
    use(d3, late)
    with pytest.raises(DomainError) as e:
        use(d1, late)  # new again, and the window holds two values
    assert codes(e.value) == ["quota.distinct_params_per_subject"]
    use(d1, world.now + 51 * DAY)  # d2 gone: d1 re-enters with a fresh first use
    snap = quotas.snapshot(world.engine, ag, world.bank.name, now=world.now + 51 * DAY, subject_hash=alice,
                           param_hash=d1)
    assert (snap.distinct_params, snap.param_is_new) == (2, False)


def test_a_zero_quota_refuses_and_writes_nothing(world: World) -> None:
    ag = world.active(quotas={"scores_per_day": 0})
    with pytest.raises(DomainError) as e:
        quotas.consume(world.engine, ag, world.bank.name, ("call", "score"), now=world.now)
    assert codes(e.value) == ["quota.scores_per_day"]
    snap = quotas.snapshot(world.engine, ag, world.bank.name, now=world.now)
    assert (snap.calls_today, snap.scores_today) == (0, 0)


def test_failed_meter_rolls_back_the_others(world: World) -> None:
    ag = world.active(quotas={"calls_per_day": 5, "jobs_per_day": 0})
    with pytest.raises(DomainError) as e:
        quotas.consume(world.engine, ag, world.bank.name, ("call", "job"), now=world.now)
    assert codes(e.value) == ["quota.jobs_per_day"]
    snap = quotas.snapshot(world.engine, ag, world.bank.name, now=world.now)
    assert snap.calls_today == 0


def test_usage_and_billing(world: World) -> None:
    ag = world.active(approval="auto_within_budget",
                      price={"per_call": "0.05", "per_job": 2, "per_epsilon": 100, "currency": "CNY"})
    d1, d2 = world.now, world.now + DAY
    policies.authorize(world.engine, world.bank, Action.QUERY_PREVIEW, ag.id, now=d1, **PREVIEW)
    job = policies.submit(world.engine, world.bank, ag.id, "query", {"sql": "q"}, datasets=["tax_income",
                          "enterprise_registry"], cost=Budget.parse("0.1"), now=d1)
    policies.submit(world.engine, world.bank, ag.id, "query", {"sql": "q2"}, datasets=["tax_income"],
                    cost=Budget.parse("0.25"), now=d2)
    policies.claim_next(world.engine, "w", now=d2)
    policies.claim_next(world.engine, "w", now=d2)
    policies.fail(world.engine, job.id, "worker.error", now=d2)  # refunded on day 2
    u = policies.usage(world.engine, ag.id, d1.date(), d2.date())
    by_day = {d.day: d for d in u.days}
    assert by_day[d1.date()].calls == 2 and by_day[d1.date()].jobs == 1
    assert by_day[d1.date()].epsilon == Fraction(1, 10)  # charged on two datasets, counted once
    assert by_day[d2.date()].calls == 1 and by_day[d2.date()].epsilon == Fraction(1, 4) - Fraction(1, 10)
    assert u.calls == 3 and u.jobs == 2 and u.epsilon == Fraction(1, 4)
    assert u.billable == Fraction(3 * 5, 100) + 2 * 2 + 100 * Fraction(1, 4)
    body = u.as_json()
    assert body["billable"] == {"amount": "29.15", "exact": "29.15", "currency": "CNY"}
    assert body["totals"]["epsilon"] == "0.25"
    only_d1 = policies.usage(world.engine, ag.id, d1.date(), d1.date())
    assert only_d1.calls == 2 and only_d1.epsilon == Fraction(1, 10)
    assert policies.read_usage(world.engine, world.owner, ag.id, d1.date(), d2.date(), now=d2).calls == 3
    with pytest.raises(DomainError) as e:
        policies.read_usage(world.engine, world.stranger, ag.id, d1.date(), d2.date(), now=d2)
    assert e.value.code == NOT_FOUND_OR_FORBIDDEN


def test_usage_without_price_and_bad_window(world: World) -> None:
    ag = world.active()
    u = policies.usage(world.engine, ag.id, world.now.date(), world.now.date())
    assert u.billable is None and "billable" not in u.as_json() and u.days == ()
    with pytest.raises(DomainError) as e:
        policies.usage(world.engine, ag.id, world.now.date(), world.now.date() - DAY)
    assert e.value.code == INVALID_REQUEST
    with pytest.raises(DomainError) as e:
        policies.usage(world.engine, "agr_missing", world.now.date(), world.now.date())
    assert e.value.code == NOT_FOUND_OR_FORBIDDEN


def refusal(err: DomainError) -> tuple[list[str], int]:
    """A batch's refusal: the exhausted meters' reasons and the slot they belong to (the last detail)."""
    *reasons, last = err.details
    return [d["reason"] for d in reasons], last["subject_index"]


def _batch(world: World, ag: Any, hashes: list[str], param: str) -> None:
    with world.engine.begin() as conn:
        quotas.consume_subjects_in(conn, ag, world.bank.name, ("call", "verify", "param"), world.now, hashes, param)


def test_a_batch_meters_every_subject_in_one_go_all_or_nothing(world: World) -> None:
    """An encrypted check's batch: the call counted once, each subject's verify and param meters once; a batch with
    one exhausted subject is refused naming the first such slot and its meters, and counts nothing."""
    ag = world.active(quotas={"calls_per_day": 3, "verify_per_subject_per_day": 2, "distinct_params_per_subject": 2})
    a, b, c = subject("P0001"), subject("P0002"), subject("P0003")
    p1, p2, p3 = (quotas.params_digest({"encrypted_check": n}) for n in ("1", "2", "3"))

    def usage(who: str) -> tuple[int, int, int]:
        snap = quotas.snapshot(world.engine, ag, world.bank.name, now=world.now, subject_hash=who)
        return snap.calls_today, snap.verifies_subject_today, snap.distinct_params

    _batch(world, ag, [c, a, b], p1)
    assert [usage(s) for s in (a, b, c)] == [(1, 1, 1)] * 3
    quotas.consume(world.engine, ag, world.bank.name, ("verify", "param"), now=world.now, subject_hash=b,
                   param_hash=p2)  # b's verify quota and its distinct values are now used up
    with pytest.raises(DomainError) as e:
        _batch(world, ag, [a, c, b], p3)
    assert e.value.code == QUOTA_EXCEEDED
    assert refusal(e.value) == (["quota.verify_per_subject_per_day", "quota.distinct_params_per_subject"], 2)
    assert [usage(s) for s in (a, b, c)] == [(1, 1, 1), (1, 2, 2), (1, 1, 1)]  # nothing of the batch stayed
    _batch(world, ag, [a, c], p2)  # a and c each see a second value: their caps are now full
    with pytest.raises(DomainError) as e:
        _batch(world, ag, [c, a], p3)
    assert refusal(e.value) == (["quota.verify_per_subject_per_day", "quota.distinct_params_per_subject"], 0)
    _batch(world, ag, [subject("P0004")], p3)  # the day's third call
    with pytest.raises(DomainError) as e:
        _batch(world, ag, [subject("P0005")], p3)
    assert refusal(e.value) == (["quota.calls_per_day"], 0)
    with pytest.raises(DomainError) as e:
        _batch(world, ag, [a, a], p3)
    assert e.value.code == INVALID_REQUEST


def test_racing_batches_never_exceed_a_subjects_caps(world: World) -> None:
    """Concurrent batches naming the same subjects in different slot orders: each subject's quota holds exactly,
    and no two batches deadlock (rows are locked in one order whatever the slots)."""
    ag = world.active(quotas={"verify_per_subject_per_day": 3, "distinct_params_per_subject": 100})
    hashes = [subject(f"P{i:04d}") for i in range(40)]
    orders = [hashes[i % 40:] + hashes[:i % 40] for i in range(0, 80, 10)]
    ok, refused = _race(8, lambda i: _batch(world, ag, orders[i], quotas.params_digest({"n": i})))
    assert len(ok) == 3 and refused == [QUOTA_EXCEEDED] * 5
    snap = quotas.snapshot(world.engine, ag, world.bank.name, now=world.now, subject_hash=hashes[7])
    assert (snap.calls_today, snap.verifies_subject_today, snap.distinct_params) == (3, 3, 3)
