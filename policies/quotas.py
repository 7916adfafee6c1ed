"""Metering and quotas: per-agreement, per-principal, per-UTC-day counters with atomic increments.

Meters (names from `policies.decision`): ``call`` (every data-plane request), ``job`` (every submitted job or
query run), ``score`` (HE scoring calls), ``verify`` (verification calls, per hashed subject) and ``param``
(distinct verification parameter values per hashed subject within a rolling window of
``quotas.distinct_params_window_days``; the cap ``distinct_params_per_subject`` defeats binary search on a
threshold). Subject identifiers arrive already hashed (the hash of their one canonical spelling,
`sandbox.verify.canonical_subject`); parameter values are reduced to `params_digest` of their canonical form
(``8000`` and ``8000.0`` are one value).

Each increment is one statement, ``INSERT … VALUES (…, 1) ON CONFLICT (key) DO UPDATE SET count = count + 1
WHERE count < limit RETURNING count`` (no row back: the quota is used up; a limit of 0 writes nothing), so it is
atomic on SQLite and PostgreSQL alike and a quota can never be overrun by concurrent calls. The distinct-parameter
cap is one statement too: an ``INSERT … SELECT … WHERE <the value is in the window> OR <fewer than the cap are>
ON CONFLICT DO UPDATE … RETURNING`` (a value first seen before the window counts as new and gets a fresh
``first_seen``). `consume_in` runs inside the caller's transaction: if any meter is exhausted it raises
``QUOTA_EXCEEDED`` (every exhausted meter in the details) and the caller's rollback undoes the other increments.
On PostgreSQL the per-subject ``verify`` row is upserted before the ``param`` check, and ``ON CONFLICT DO
UPDATE`` locks the conflicting row even when its condition is false, so that row lock serialises concurrent
checks on one subject (the cap's count then sees every committed value); every transaction takes the locks in
the same order (the order of `policies.decision` meters), so two checks cannot deadlock.

An encrypted check meters its whole batch of subjects at once (`consume_subjects_in`): the call once, then one
statement per per-subject meter for every subject (the subjects a single bind parameter, read by ``json_each`` on
SQLite and ``unnest`` on PostgreSQL, each row still its own conditional upsert), so 1 024 subjects cost three
statements instead of 2 049; rows are taken in sorted subject order, so overlapping batches cannot deadlock, and a
refusal names the first exhausted subject (``subject_index``) exactly as metering them one by one would.

`usage` reports calls, jobs, verifications, scores and ε (from the ledger journal, net of refunds, each job
counted once) per day and, with a price schedule, the billable amount.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    String,
    bindparam,
    case,
    exists,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from catalog.errors import QUOTA_EXCEEDED, DomainError, invalid, not_found
from catalog.fingerprint import HashAlg
from policies import _tables as t
from policies._canonical import json_digest
from policies._clock import aware
from policies._exact import exact_str, from_db
from policies.agreements.record import Agreement, load_agreement
from policies.decision import CALL, JOB, PARAM, SCORE, VERIFY, QuotaUsage, Reason
from policies.journal import Journal, write

_KINDS = (CALL, JOB, SCORE, VERIFY)


#: Numbers above this magnitude are not verification parameters (`sandbox.verify.MAX_NUMBER`).
_MAX_PARAM_NUMBER = 2.0**53


def _canonical_param(value: Any) -> Any:
    """One spelling per value: every number as its finite double (``8000`` and ``8000.0`` are one value, ``-0.0``
    is ``0.0``), strings exact, mappings and lists element-wise; bools, NaN, infinities and magnitudes above
    2^53 are ``INVALID_REQUEST`` (they are never parameter values)."""
    if isinstance(value, bool) or value is None:
        raise invalid("a verification parameter is a number or a string")
    if isinstance(value, int):
        if abs(value) > _MAX_PARAM_NUMBER:
            raise invalid("a verification parameter has magnitude at most 2^53")
        return float(value) + 0.0
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) > _MAX_PARAM_NUMBER:
            raise invalid("a verification parameter is finite with magnitude at most 2^53")
        return value + 0.0
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _canonical_param(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical_param(v) for v in value]
    raise invalid("a verification parameter is a number or a string")


def params_digest(params: Mapping[str, Any], hash_alg: HashAlg = "sha256") -> str:
    """A stable digest of verification parameter values (never stored or logged in clear), over their canonical
    form (`_canonical_param`), so the distinct-value cap counts values, not spellings. The gateway passes the
    product and its canonically typed values (`sandbox.verify.canonical_params`), and the home suite's hash
    ``hash_alg`` (``sha256:`` in ``intl``, ``sm3:`` in ``sm``)."""
    return json_digest(_canonical_param(dict(params)), hash_alg)


def _day(now: dt.datetime) -> str:
    return aware(now).date().isoformat()


def _limits(ag: Agreement) -> dict[str, int]:
    q = ag.document.quotas
    return {CALL: q.calls_per_day, JOB: q.jobs_per_day, SCORE: q.scores_per_day,
            VERIFY: q.verify_per_subject_per_day}


_REASON = {
    CALL: "quota.calls_per_day",
    JOB: "quota.jobs_per_day",
    SCORE: "quota.scores_per_day",
    VERIFY: "quota.verify_per_subject_per_day",
    PARAM: "quota.distinct_params_per_subject",
}


_METER_KEY = ("agreement_id", "principal", "kind", "day", "subject_hash")
_PARAM_KEY = ("agreement_id", "subject_hash", "param_hash")


def _meter_upsert(insert: Any) -> Any:
    """The first unit inserts the row at 1; later ones add 1 while below ``:limit``; a row back means counted. On
    PostgreSQL the conflicting row is locked even when the condition is false (the lock ordering of `consume_in`)."""
    m = t.metering.c
    ins = insert(t.metering).values(count=1, **{k: bindparam(f"k_{k}") for k in _METER_KEY})
    return ins.on_conflict_do_update(
        index_elements=list(_METER_KEY), set_={"count": m["count"] + 1}, where=m["count"] < bindparam("limit"),
    ).returning(m["count"])


def _param_upsert(insert: Any) -> Any:
    """The value is (re)recorded if it is already in the window or the window holds fewer than ``:cap`` values; a
    value seen before the window counts as new and gets a fresh first_seen, one seen inside keeps its own. No row
    back means the cap refused it."""
    p = t.metering_params.c
    key = [p.agreement_id == bindparam("k_agreement_id"), p.subject_hash == bindparam("k_subject_hash")]
    start = bindparam("start", type_=p.first_seen.type)
    fresh = exists().where(*key, p.param_hash == bindparam("k_param_hash"), p.first_seen >= start)
    in_window = select(func.count()).select_from(t.metering_params).where(*key, p.first_seen >= start)
    candidate = select(
        bindparam("k_agreement_id", type_=p.agreement_id.type), bindparam("k_subject_hash", type_=p.subject_hash.type),
        bindparam("k_param_hash", type_=p.param_hash.type), bindparam("now", type_=p.first_seen.type),
    ).where(or_(fresh, in_window.scalar_subquery() < bindparam("cap")))
    ins = insert(t.metering_params).from_select([*_PARAM_KEY, "first_seen"], candidate)
    return ins.on_conflict_do_update(
        index_elements=list(_PARAM_KEY),
        set_={"first_seen": case((p.first_seen >= start, p.first_seen), else_=ins.excluded.first_seen)},
    ).returning(p.first_seen)


# Built once per dialect with bind parameters, so a check constructs no statement (SQLAlchemy's compiled cache
# then serves every call); other dialects take the read-then-write paths below.
_UPSERTS: dict[str, tuple[Any, Any]] = {
    name: (_meter_upsert(insert), _param_upsert(insert))
    for name, insert in (("sqlite", sqlite.insert), ("postgresql", postgresql.insert))
}


def _bump(conn: Connection, key: dict[str, str], limit: int) -> bool:
    m = t.metering.c
    if limit <= 0:  # nothing is allowed: no row may reach 1
        return False
    upserts = _UPSERTS.get(conn.dialect.name)
    if upserts is not None:
        params = {f"k_{k}": v for k, v in key.items()}
        return conn.execute(upserts[0], {**params, "limit": limit}).first() is not None
    # other dialects: plain check-then-insert inside the transaction
    found = conn.execute(select(m.id).where(*[m[k] == v for k, v in key.items()])).first()
    if found is None:
        conn.execute(t.metering.insert().values(**key, count=0))
    res = conn.execute(
        update(t.metering)
        .where(*[m[k] == v for k, v in key.items()], m["count"] < limit)
        .values(count=m["count"] + 1)
    )
    return res.rowcount == 1


def _bump_param(conn: Connection, ag: Agreement, subject_hash: str, param_hash: str, now: dt.datetime) -> bool:
    q = ag.document.quotas
    p = t.metering_params.c
    start = now - dt.timedelta(days=q.distinct_params_window_days)
    upserts = _UPSERTS.get(conn.dialect.name)
    if upserts is not None:
        params = {"k_agreement_id": ag.id, "k_subject_hash": subject_hash, "k_param_hash": param_hash, "now": now,
                  "start": start, "cap": q.distinct_params_per_subject}
        return conn.execute(upserts[1], params).first() is not None
    key = [p.agreement_id == ag.id, p.subject_hash == subject_hash]
    # other dialects: read, count, then write inside the transaction
    row = conn.execute(select(p.first_seen).where(*key, p.param_hash == param_hash)).first()
    if row is not None and row.first_seen >= start:
        return True
    used = conn.execute(select(func.count()).select_from(t.metering_params).where(*key, p.first_seen >= start))
    if used.scalar_one() >= q.distinct_params_per_subject:
        return False
    if row is None:
        conn.execute(t.metering_params.insert().values(
            agreement_id=ag.id, subject_hash=subject_hash, param_hash=param_hash, first_seen=now))
    else:
        conn.execute(update(t.metering_params).where(*key, p.param_hash == param_hash).values(first_seen=now))
    return True


def consume_in(
    conn: Connection, agreement: Agreement, principal: str, meters: tuple[str, ...], now: dt.datetime,
    subject_hash: str | None = None, param_hash: str | None = None,
) -> None:
    """Increment ``meters`` atomically within the caller's transaction; ``QUOTA_EXCEEDED`` if any is used up."""
    if (VERIFY in meters or PARAM in meters) and not subject_hash:
        raise invalid("a verification call needs a (hashed) subject")
    if PARAM in meters and not param_hash:
        raise invalid("a verification call needs its parameters")
    limits, day = _limits(agreement), _day(now)
    failed: list[str] = []
    for meter in meters:
        if meter == PARAM:
            assert subject_hash is not None and param_hash is not None
            ok = _bump_param(conn, agreement, subject_hash, param_hash, now)
        else:
            subject = (subject_hash or "") if meter == VERIFY else ""
            key = {"agreement_id": agreement.id, "principal": principal, "kind": meter, "day": day,
                   "subject_hash": subject}
            ok = _bump(conn, key, limits[meter])
        if not ok:
            failed.append(meter)
    if failed:
        raise DomainError(QUOTA_EXCEEDED, "a quota of the agreement is exhausted",
                          [Reason(_REASON[m]).as_dict() for m in failed])


def _subjects(dialect: str) -> Any:
    """The subject hashes of one batch as a one-column table ``value``: one bind parameter whatever their number
    (a JSON array read by ``json_each`` on SQLite, a text array ``unnest``-ed on PostgreSQL), so a batch is one
    statement per meter with one cached plan, and no variable limit applies."""
    if dialect == "postgresql":
        arg = bindparam("subjects", type_=postgresql.ARRAY(String))
        return func.unnest(arg).table_valued("value").render_derived(name="s")
    return func.json_each(bindparam("subjects", type_=String)).table_valued("value").alias("s")


def _meter_batch_upsert(dialect: str, insert: Any) -> Any:
    """`_meter_upsert` for every subject of a batch in one statement: a subject whose row comes back is counted,
    one missing has used up its quota. Each row is its own upsert (``count < :limit`` per subject)."""
    m, s = t.metering.c, _subjects(dialect)
    key = [bindparam(f"k_{k}", type_=String) for k in _METER_KEY[:-1]]
    # SQLite needs a WHERE on an INSERT … SELECT before ON CONFLICT (its parsing ambiguity); it holds for every row
    candidate = select(*key, s.c.value, literal_column("1")).select_from(s).where(s.c.value.is_not(None))
    ins = insert(t.metering).from_select([*_METER_KEY, "count"], candidate)
    return ins.on_conflict_do_update(
        index_elements=list(_METER_KEY), set_={"count": m["count"] + 1}, where=m["count"] < bindparam("limit"),
    ).returning(m.subject_hash)


def _param_batch_upsert(dialect: str, insert: Any) -> Any:
    """`_param_upsert` for every subject of a batch in one statement (one parameter value, each subject's own
    window and cap); the subjects whose row comes back are counted."""
    p, s = t.metering_params.c, _subjects(dialect)
    key = [p.agreement_id == bindparam("k_agreement_id", type_=p.agreement_id.type), p.subject_hash == s.c.value]
    start = bindparam("start", type_=p.first_seen.type)
    fresh = exists().where(*key, p.param_hash == bindparam("k_param_hash", type_=p.param_hash.type),
                           p.first_seen >= start).correlate(s)
    in_window = (select(func.count()).select_from(t.metering_params).where(*key, p.first_seen >= start)
                 .correlate(s).scalar_subquery())
    candidate = select(
        bindparam("k_agreement_id", type_=p.agreement_id.type), s.c.value,
        bindparam("k_param_hash", type_=p.param_hash.type), bindparam("now", type_=p.first_seen.type),
    ).select_from(s).where(or_(fresh, in_window < bindparam("cap")))
    ins = insert(t.metering_params).from_select([*_PARAM_KEY, "first_seen"], candidate)
    return ins.on_conflict_do_update(
        index_elements=list(_PARAM_KEY),
        set_={"first_seen": case((p.first_seen >= start, p.first_seen), else_=ins.excluded.first_seen)},
    ).returning(p.subject_hash)


_BATCH_UPSERTS: dict[str, tuple[Any, Any]] = {
    name: (_meter_batch_upsert(name, insert), _param_batch_upsert(name, insert))
    for name, insert in (("sqlite", sqlite.insert), ("postgresql", postgresql.insert))
}


def _counted(conn: Connection, statement: Any, hashes: list[str], params: dict[str, Any]) -> set[str]:
    """The subjects among ``hashes`` (sorted) that ``statement`` counted: the rows it returned."""
    subjects: Any = hashes if conn.dialect.name == "postgresql" else json.dumps(hashes)
    return set(conn.execute(statement, {**params, "subjects": subjects}).scalars())


def consume_subjects_in(
    conn: Connection, agreement: Agreement, principal: str, meters: tuple[str, ...], now: dt.datetime,
    subject_hashes: Sequence[str], param_hash: str,
) -> None:
    """`consume_in` for a batch of distinct subjects asked one question (an encrypted check): the meters that are
    not per subject (``call``) count once, ``verify`` and ``param`` once per subject, each meter one statement for
    the whole batch on SQLite and PostgreSQL (subjects in sorted order, so concurrent batches lock their rows in
    one order). Within the caller's transaction: if any meter of any subject is used up it raises
    ``QUOTA_EXCEEDED`` naming the first such subject's exhausted meters (in slot order, the per-subject meters
    of slot 0 with the others) and its ``subject_index``, and the caller's rollback undoes every increment —
    exactly what metering the subjects one after another would have refused."""
    hashes = list(subject_hashes)
    if (VERIFY in meters or PARAM in meters) and (not hashes or not all(hashes)):
        raise invalid("a verification call needs a (hashed) subject")
    if PARAM in meters and not param_hash:
        raise invalid("a verification call needs its parameters")
    if len(set(hashes)) != len(hashes):
        raise invalid("each subject is metered once per batch")
    limits, day = _limits(agreement), _day(now)
    ordered = sorted(hashes)
    upserts = _BATCH_UPSERTS.get(conn.dialect.name)
    failed: dict[int, list[str]] = defaultdict(list)
    for meter in meters:
        if meter == VERIFY:
            if limits[VERIFY] <= 0:  # nothing is allowed: no row may reach 1
                counted: set[str] = set()
            elif upserts is not None:
                counted = _counted(conn, upserts[0], ordered, {
                    "k_agreement_id": agreement.id, "k_principal": principal, "k_kind": VERIFY, "k_day": day,
                    "limit": limits[VERIFY]})
            else:
                counted = {h for h in ordered if _bump(conn, {"agreement_id": agreement.id, "principal": principal,
                                                              "kind": VERIFY, "day": day, "subject_hash": h},
                                                       limits[VERIFY])}
        elif meter == PARAM:
            q = agreement.document.quotas
            if upserts is not None:
                counted = _counted(conn, upserts[1], ordered, {
                    "k_agreement_id": agreement.id, "k_param_hash": param_hash, "now": now,
                    "start": now - dt.timedelta(days=q.distinct_params_window_days),
                    "cap": q.distinct_params_per_subject})
            else:
                counted = {h for h in ordered if _bump_param(conn, agreement, h, param_hash, now)}
        else:
            key = {"agreement_id": agreement.id, "principal": principal, "kind": meter, "day": day,
                   "subject_hash": ""}
            if not _bump(conn, key, limits[meter]):
                failed[0].append(meter)
            continue
        for i, h in enumerate(hashes):
            if h not in counted:
                failed[i].append(meter)
    if failed:
        first = min(failed)
        raise DomainError(QUOTA_EXCEEDED, "a quota of the agreement is exhausted",
                          [*(Reason(_REASON[m]).as_dict() for m in failed[first]), {"subject_index": first}])


def consume(
    engine: Engine, agreement: Agreement, principal: str, meters: tuple[str, ...], *,
    now: dt.datetime | None = None, subject_hash: str | None = None, param_hash: str | None = None,
    journal: Journal | None = None,
) -> None:
    """`consume_in` in its own transaction (all meters or none); ``journal`` (`policies.journal`) records the
    metered call in that transaction."""
    now = aware(now)
    with engine.begin() as conn:
        consume_in(conn, agreement, principal, meters, now, subject_hash, param_hash)
        write(conn, journal)


_m, _p = t.metering.c, t.metering_params.c
# The day's rows of this principal, but of the ``verify`` rows only this subject's: a principal verifies many
# subjects a day, and reading every one of their rows would make each check's cost grow with the day's checks.
_DAY_ROWS = select(_m.kind, _m.subject_hash, _m["count"].label("n")).where(
    _m.agreement_id == bindparam("ag"), _m.principal == bindparam("principal"), _m.day == bindparam("day"),
    or_(_m.kind != VERIFY, _m.subject_hash == bindparam("subject")))
_WINDOW_PARAMS = select(_p.param_hash).where(
    _p.agreement_id == bindparam("ag"), _p.subject_hash == bindparam("subject"), _p.first_seen >= bindparam("start"))


def snapshot(
    engine: Engine, agreement: Agreement, principal: str, *, now: dt.datetime | None = None,
    subject_hash: str | None = None, param_hash: str | None = None,
) -> QuotaUsage:
    """Usage so far today (and in the parameter window) for `policies.decision.decide`."""
    with engine.connect() as conn:
        return snapshot_in(conn, agreement, principal, aware(now), subject_hash, param_hash)


def snapshot_in(
    conn: Connection, agreement: Agreement, principal: str, now: dt.datetime, subject_hash: str | None = None,
    param_hash: str | None = None,
) -> QuotaUsage:
    """`snapshot` within ``conn``'s transaction (the decision's reads share one)."""
    rows = conn.execute(_DAY_ROWS, {"ag": agreement.id, "principal": principal, "day": _day(now),
                                    "subject": subject_hash or ""}).all()
    distinct, is_new = 0, False
    if subject_hash:
        start = now - dt.timedelta(days=agreement.document.quotas.distinct_params_window_days)
        seen = set(conn.execute(_WINDOW_PARAMS, {"ag": agreement.id, "subject": subject_hash, "start": start})
                   .scalars())
        distinct, is_new = len(seen), param_hash is not None and param_hash not in seen
    counts = {k: sum(int(r.n) for r in rows if r.kind == k and (k != VERIFY or r.subject_hash == subject_hash))
              for k in _KINDS}
    return QuotaUsage(
        calls_today=counts[CALL], jobs_today=counts[JOB], scores_today=counts[SCORE],
        verifies_subject_today=counts[VERIFY] if subject_hash else 0,
        distinct_params=distinct, param_is_new=is_new,
    )


@dataclass(frozen=True)
class DayUsage:
    """One UTC day of an agreement's usage: meter counts and the ε spent net of refunds."""

    day: dt.date
    calls: int = 0
    jobs: int = 0
    verifications: int = 0
    scores: int = 0
    epsilon: Fraction = Fraction(0)

    def as_json(self) -> dict[str, Any]:
        """The day as JSON (ε as exact text)."""
        return {"day": self.day.isoformat(), "calls": self.calls, "jobs": self.jobs,
                "verifications": self.verifications, "scores": self.scores, "epsilon": exact_str(self.epsilon)}


@dataclass(frozen=True)
class Usage:
    """An agreement's usage over ``since``..``until``, per day, with the billable amount if it has prices."""

    agreement_id: str
    since: dt.date
    until: dt.date
    days: tuple[DayUsage, ...]
    billable: Fraction | None
    currency: str | None

    def _total(self, field: str) -> Any:
        return sum((getattr(d, field) for d in self.days), Fraction(0) if field == "epsilon" else 0)

    @property
    def calls(self) -> int:
        """Data-plane calls over the period."""
        return int(self._total("calls"))

    @property
    def jobs(self) -> int:
        """Jobs and query runs over the period."""
        return int(self._total("jobs"))

    @property
    def epsilon(self) -> Fraction:
        """ε spent over the period, net of refunds."""
        return Fraction(self._total("epsilon"))

    def as_json(self) -> dict[str, Any]:
        """The report as JSON: every day, the totals, and the billable amount (to 0.01 and exact) when priced."""
        out: dict[str, Any] = {
            "agreement_id": self.agreement_id,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "days": [d.as_json() for d in self.days],
            "totals": {"calls": self.calls, "jobs": self.jobs,
                       "verifications": int(self._total("verifications")), "scores": int(self._total("scores")),
                       "epsilon": exact_str(self.epsilon)},
        }
        if self.billable is not None:
            cents = (Decimal(self.billable.numerator) / Decimal(self.billable.denominator)).quantize(
                Decimal("0.01"), rounding=ROUND_HALF_UP)
            out["billable"] = {"amount": str(cents), "exact": exact_str(self.billable), "currency": self.currency}
        return out


def usage(engine: Engine, agreement_id: str, since: dt.date, until: dt.date) -> Usage:
    """Usage of an agreement per UTC day, ``since``..``until`` inclusive, and the billable amount if the
    agreement has a price schedule (per_call × calls + per_job × jobs + per_epsilon × ε)."""
    if until < since:
        raise invalid("until must not be before since")
    if (until - since).days > 3660:
        raise invalid("the usage window is at most ten years")
    ag = load_agreement(engine, agreement_id)
    if ag is None:
        raise not_found("agreement")
    m, e = t.metering.c, t.budget_entries.c
    start = dt.datetime.combine(since, dt.time(), dt.UTC)
    end = dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), dt.UTC)
    with engine.connect() as conn:
        counts = conn.execute(
            select(m.day, m.kind, func.sum(m["count"]))
            .where(m.agreement_id == agreement_id, m.day >= since.isoformat(), m.day <= until.isoformat())
            .group_by(m.day, m.kind)
        ).all()
        journal = conn.execute(
            select(e.job_id, e.kind, e.epsilon, e.ts)
            .where(e.agreement_id == agreement_id, e.ts >= start, e.ts < end)
            .order_by(e.id)
        ).all()
    per_day: dict[dt.date, dict[str, Any]] = defaultdict(lambda: {"epsilon": Fraction(0)})
    for day, kind, n in counts:
        per_day[dt.date.fromisoformat(day)][kind] = int(n)
    seen: set[tuple[str, str]] = set()
    for job_id, kind, eps, ts in journal:  # one row per dataset: count each (job, kind) once
        if (job_id, kind) in seen:
            continue
        seen.add((job_id, kind))
        sign = 1 if kind == "debit" else -1
        per_day[ts.date()]["epsilon"] += sign * from_db(eps)
    days = tuple(
        DayUsage(day, calls=v.get(CALL, 0), jobs=v.get(JOB, 0), verifications=v.get(VERIFY, 0),
                 scores=v.get(SCORE, 0), epsilon=v["epsilon"])
        for day, v in sorted(per_day.items())
    )
    price = ag.document.price
    billable = None
    if price is not None:
        calls = sum(d.calls for d in days)
        jobs = sum(d.jobs for d in days)
        eps = sum((d.epsilon for d in days), Fraction(0))
        billable = price.per_call * calls + price.per_job * jobs + price.per_epsilon * eps
    return Usage(agreement_id, since, until, days, billable, price.currency if price else None)
