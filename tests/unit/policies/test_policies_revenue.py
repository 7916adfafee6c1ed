"""Revenue terms and statements (收益分成): price lines, exact splits to the cent, reconciliation with the meters."""

from __future__ import annotations

import datetime as dt
import itertools
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import policies
from catalog.errors import INVALID_REQUEST, NOT_FOUND_OR_FORBIDDEN, POLICY_DENIED, DomainError
from policies import _tables as t
from policies import revenue
from policies.agreements.document import AgreementDocument
from policies.withdrawal import withdraw
from tests.unit.policies.conftest import World, document

_IDS = itertools.count()


def test_new_price_keys_and_revenue_keep_old_hashes() -> None:
    old = document(price={"per_call": "0.05", "per_job": 2, "currency": "CNY"})
    doc = AgreementDocument.model_validate(old)
    assert "per_score" not in doc.as_json()["price"] and "revenue" not in doc.as_json()
    explicit = AgreementDocument.model_validate(
        document(price={"per_call": "0.05", "per_job": 2, "per_score": 0, "per_check": "0", "currency": "CNY"})
    )
    assert explicit.digest() == doc.digest()
    priced = AgreementDocument.model_validate(
        document(price={"per_call": "0.05", "per_job": 2, "per_check": "0.3", "currency": "CNY"})
    )
    assert priced.as_json()["price"]["per_check"] == "0.3" and priced.digest() != doc.digest()
    with_terms = AgreementDocument.model_validate(document(revenue={"split": "rows"}))
    assert with_terms.as_json()["revenue"] == {"category": "commercial", "split": "rows", "shares": {}}


@pytest.mark.parametrize(
    "terms",
    [
        {"split": "shares", "shares": {"a": "1/3", "b": "1/3"}},
        {"split": "shares", "shares": {"a": "0.5", "b": "0.6"}},
        {"split": "shares"},
        {"split": "rows", "shares": {"a": 1}},
        {"category": "charity", "split": "rows"},
    ],
)
def test_shares_must_sum_exactly_to_one(terms: dict[str, Any]) -> None:
    with pytest.raises(DomainError):
        policies.parse_document(document(revenue=terms))


def test_shares_summing_to_one_exactly_are_accepted() -> None:
    doc = policies.parse_document(document(revenue={"shares": {"b": "2/3", "a": "1/3"}}))
    assert doc.revenue is not None and list(doc.revenue.shares) == ["a", "b"]


@given(
    total=st.integers(0, 10**7),
    weights=st.lists(st.fractions(min_value=0, max_value=100, max_denominator=1000), min_size=1, max_size=6),
)
@settings(max_examples=40, deadline=None)
def test_allocation_sums_exactly_and_stays_within_a_cent(total: int, weights: list[Fraction]) -> None:
    ws = {f"o{i}": w for i, w in enumerate(weights)}
    parts = revenue.allocate(total, ws)
    assert sum(parts.values()) == total
    denom = sum(weights) or len(weights)
    for k, c in parts.items():
        exact = total * (ws[k] if sum(weights) else 1) / denom
        assert abs(c - exact) < 1


def test_to_cents_rounds_half_up() -> None:
    assert revenue.to_cents(Fraction(1, 200)) == 1
    assert revenue.to_cents(Fraction(1, 201)) == 0
    assert revenue.to_cents(Fraction(2915, 100)) == 2915
    assert revenue.cents_text(2915) == "29.15"


MONTH = "2026-03"
FIRST = dt.date(2026, 3, 1)
_KINDS = ("call", "job", "score", "verify")
_PRICE = st.fractions(min_value=0, max_value=50, max_denominator=1000)
_EVENT = st.tuples(st.integers(-3, 33), st.sampled_from(_KINDS), st.integers(1, 40))
_EPS = st.tuples(
    st.integers(-3, 33),
    st.sampled_from(["tax_income", "enterprise_registry"]),
    st.fractions(min_value=0, max_value=2, max_denominator=64),
    st.booleans(),
)


def _insert_history(world: World, ag_id: str, events: list[Any], eps: list[Any]) -> None:
    with world.engine.begin() as conn:
        for i, (day, kind, n) in enumerate(events):
            conn.execute(
                t.metering.insert().values(
                    agreement_id=ag_id,
                    principal=f"p{i}",
                    kind=kind,
                    day=(FIRST + dt.timedelta(days=day)).isoformat(),
                    subject_hash="",
                    count=n,
                )
            )
        for i, (day, ds, e, refunded) in enumerate(eps):
            ts = dt.datetime.combine(FIRST + dt.timedelta(days=day), dt.time(12), dt.UTC)
            for kind in ("debit", "refund") if refunded else ("debit",):
                conn.execute(
                    t.budget_entries.insert().values(
                        agreement_id=ag_id, dataset=ds, job_id=f"{ag_id}-j{i}", kind=kind, epsilon=policies_exact(e),
                        delta="0", ts=ts,
                    )
                )


def policies_exact(f: Fraction) -> str:
    from policies._exact import to_db

    return to_db(f)


@given(
    prices=st.tuples(_PRICE, _PRICE, _PRICE, _PRICE, _PRICE),
    events=st.lists(_EVENT, max_size=12),
    eps=st.lists(_EPS, max_size=6),
    split=st.sampled_from(["shares", "epsilon", "rows", None]),
    welfare=st.booleans(),
)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_statement_reconciles_with_the_meters_to_the_cent(
    world: World, prices: tuple[Fraction, ...], events: list[Any], eps: list[Any], split: str | None, welfare: bool,
) -> None:
    price = dict(zip(("per_call", "per_job", "per_epsilon", "per_score", "per_check"), map(str, prices), strict=True))
    terms: dict[str, Any] | None = None
    if split is not None:
        terms = {"split": split, "category": "public_welfare" if welfare else "commercial"}
        if split == "shares":
            terms["shares"] = {world.owner.name: 1}
    ag = world.active(price={**price, "currency": "CNY"}, **({"revenue": terms} if terms else {}))
    _insert_history(world, ag.id, events, eps)
    s = revenue.agreement_statement(world.engine, world.regulator, ag.id, MONTH, now=world.now)

    inside = [(k, n) for d, k, n in events if 0 <= d < 31]
    counts = {k: sum(n for kk, n in inside if kk == k) for k in _KINDS}
    epsilon = sum((e for d, _, e, refunded in eps if 0 <= d < 31 and not refunded), Fraction(0))
    assert (s.usage.calls, s.usage.jobs, s.usage.scores, s.usage.checks) == (
        counts["call"], counts["job"], counts["score"], counts["verify"])
    assert s.usage.epsilon == epsilon
    free = split is not None and welfare
    exact = Fraction(0) if free else (
        prices[0] * counts["call"] + prices[1] * counts["job"] + prices[2] * epsilon
        + prices[3] * counts["score"] + prices[4] * counts["verify"])
    assert s.total_exact == exact and s.total_cents == revenue.to_cents(exact)
    assert sum(s.line_cents.values()) == s.total_cents == sum(s.owner_cents.values())
    assert s.owner_cents == {world.owner.name: s.total_cents}
    body = s.as_json()
    assert body["total"]["amount"] == revenue.cents_text(s.total_cents)
    assert revenue.agreement_csv(s).count("\r\n") == 1 + len(revenue.LINES) + 1 + len(s.owner_cents)


@pytest.mark.parametrize("store", ["sqlite"])
def test_statement_readers(world: World) -> None:
    ag = world.active(price={"per_call": 1, "currency": "CNY"})
    for reader in (world.owner, world.bank, world.regulator):
        revenue.agreement_statement(world.engine, reader, ag.id, MONTH, now=world.now)
    for stranger in (world.stranger, world.other_owner):
        with pytest.raises(DomainError) as e:
            revenue.agreement_statement(world.engine, stranger, ag.id, MONTH, now=world.now)
        assert e.value.code == NOT_FOUND_OR_FORBIDDEN
    with pytest.raises(DomainError):
        revenue.agreement_statement(world.engine, world.owner, ag.id, "2026-13", now=world.now)
    with pytest.raises(DomainError):
        revenue.agreement_statement(world.engine, world.owner, ag.id, "9999-12", now=world.now)
    own = revenue.owner_statement(world.engine, world.owner, MONTH)
    assert [e["agreement_id"] for e in own.as_json()["agreements"]] == [ag.id]
    assert revenue.owner_statement(world.engine, world.regulator, MONTH, owner=world.owner.name).owner == "tax-bureau"
    with pytest.raises(DomainError) as e:
        revenue.owner_statement(world.engine, world.other_owner, MONTH, owner=world.owner.name)
    assert e.value.code == NOT_FOUND_OR_FORBIDDEN
    with pytest.raises(DomainError):
        revenue.owner_statement(world.engine, world.bank, MONTH)


# -- multi-owner agreements ------------------------------------------------------------------------------------------

HR_SHARES = {"tax-bureau": "3/4", "hr-bureau": "1/4"}


def _multi(world: World, **overrides: Any) -> policies.Agreement:
    fields = _multi_fields(world)
    fields.update(overrides)
    return world.create(**fields)


def _reasons(e: pytest.ExceptionInfo[DomainError]) -> list[str]:
    return [d["reason"] for d in e.value.details]


@pytest.mark.parametrize("store", ["sqlite"])
def test_multi_owner_signing_flow(world: World) -> None:
    ag = _multi(world)
    hr = world.other_owner
    assert [a.id for a in policies.list_agreements(world.engine, hr, now=world.now)] == [ag.id]
    policies.get_agreement(world.engine, hr, ag.id, now=world.now)
    with pytest.raises(DomainError) as e:  # before every owner signed its part
        policies.accept(world.engine, world.bank, ag.id, now=world.now)
    assert e.value.code == POLICY_DENIED and e.value.details[0]["owner"] == hr.name
    for wrong, code in ((world.bank, POLICY_DENIED), (world.owner, POLICY_DENIED),
                        (policies.Actor("nobody", "owner"), NOT_FOUND_OR_FORBIDDEN)):
        with pytest.raises(DomainError) as e:
            policies.sign_agreement(world.engine, wrong, ag.id, document_hash=ag.document_hash, now=world.now)
        assert e.value.code == code
    with pytest.raises(DomainError) as e:
        policies.sign_agreement(world.engine, hr, ag.id, document_hash="sha256:" + "0" * 64, now=world.now)
    assert _reasons(e) == ["agreement.version_mismatch"]
    sig = policies.sign_agreement(world.engine, hr, ag.id, document_hash=ag.document_hash, now=world.now)
    assert sig.datasets == ("social_insurance",) and sig.current
    with pytest.raises(DomainError) as e:
        policies.sign_agreement(world.engine, hr, ag.id, document_hash=ag.document_hash, now=world.now)
    assert _reasons(e) == ["agreement.already_signed"]

    # an amendment voids the signature on the older hash
    doc = world.document(**_multi_fields(world), title="SME credit model v2")
    amended = policies.amend_agreement(world.engine, world.owner, ag.id, doc, now=world.now)
    sigs = policies.agreement_signatures(world.engine, world.regulator, ag.id, now=world.now)
    assert [(s.version, s.current) for s in sigs] == [(1, False)]
    with pytest.raises(DomainError) as e:
        policies.accept(world.engine, world.bank, ag.id, now=world.now)
    assert _reasons(e) == ["agreement.unsigned"]
    policies.sign_agreement(world.engine, hr, ag.id, document_hash=amended.document_hash, now=world.now)
    active = policies.accept(world.engine, world.bank, ag.id, now=world.now, document_hash=amended.document_hash)
    assert active.state.value == "active"
    # budget stays per dataset
    assert {a.dataset for a in policies.ledger.accounts(world.engine, ag.id)} == {"tax_income", "social_insurance"}

    with world.engine.begin() as conn:
        conn.execute(t.metering.insert().values(agreement_id=ag.id, principal=world.bank.name, kind="call",
                                                day="2026-03-02", subject_hash="", count=7))
    s = revenue.agreement_statement(world.engine, hr, ag.id, MONTH, now=world.now)
    assert s.total_cents == 70 and s.owner_cents == {"hr-bureau": 18, "tax-bureau": 52}  # 17.5 and 52.5: ties
    own = revenue.owner_statement(world.engine, hr, MONTH).as_json()
    assert own["totals"] == [{"currency": "CNY", "amount": "0.18"}]

    # the co-owner withdrawing its dataset suspends the agreement, as the proposer's withdrawal would
    w = withdraw(world.engine, hr, "social_insurance", "source retired", now=world.now)
    assert ag.id in w.agreements
    assert policies.get_agreement(world.engine, hr, ag.id, now=world.now).state.value == "suspended"


def _multi_fields(world: World) -> dict[str, Any]:
    return {
        "co_owners": [world.other_owner.name],
        "datasets": ["tax_income", "social_insurance"],
        "columns": {"tax_income": ["age", "monthly_income"], "social_insurance": ["months"]},
        "job_kinds": ["query"],
        "price": {"per_call": "0.10", "per_job": 3, "currency": "CNY"},
        "revenue": {"split": "shares", "shares": HR_SHARES},
    }


@pytest.mark.parametrize(
    ("overrides", "code", "reason"),
    [
        ({"co_owners": []}, NOT_FOUND_OR_FORBIDDEN, "dataset.not_found"),  # the single-owner rule is unchanged
        ({"co_owners": ["hr-bureau", "nobody"]}, INVALID_REQUEST, "co_owner.without_dataset"),
        ({"job_kinds": ["query", "code"]}, INVALID_REQUEST, "co_owner.code"),
        ({"revenue": {"shares": {"tax-bureau": "1/2", "icbc-wuxi": "1/2"}}}, INVALID_REQUEST,
         "revenue.share_not_owner"),
    ],
)
@pytest.mark.parametrize("store", ["sqlite"])
def test_multi_owner_documents_are_checked(world: World, overrides: dict[str, Any], code: str, reason: str) -> None:
    with pytest.raises(DomainError) as e:
        _multi(world, **overrides)
    assert e.value.code == code and reason in _reasons(e)


@pytest.mark.parametrize("store", ["sqlite"])
def test_measured_split_by_epsilon_and_rows(world: World) -> None:
    ag = _multi(world, revenue={"split": "epsilon"}, price={"per_epsilon": 10, "currency": "CNY"})
    policies.sign_agreement(world.engine, world.other_owner, ag.id, document_hash=ag.document_hash, now=world.now)
    _insert_history(world, ag.id, [], [(1, "tax_income", Fraction(3, 10), False),
                                       (2, "social_insurance", Fraction(1, 10), False),
                                       (3, "social_insurance", Fraction(1, 2), True)])  # refunded: not counted
    s = revenue.agreement_statement(world.engine, world.regulator, ag.id, MONTH, now=world.now)
    assert s.weights == {"hr-bureau": Fraction(1, 10), "tax-bureau": Fraction(3, 10)}
    assert s.total_cents == 400 and s.owner_cents == {"hr-bureau": 100, "tax-bureau": 300}
    rows = _multi(world, revenue={"split": "rows"}, price={"per_call": 1, "currency": "CNY"})
    s = revenue.agreement_statement(world.engine, world.owner, rows.id, MONTH, now=world.now)
    assert s.total_cents == 0 and set(s.owner_cents) == {"hr-bureau", "tax-bureau"}  # nothing ran: equal split


@pytest.mark.parametrize("store", ["sqlite"])
def test_single_owner_accept_needs_no_signature(world: World) -> None:
    ag = world.active()
    assert ag.state.value == "active" and "co_owners" not in ag.document.as_json()
