"""The negative list: admin-managed, checked at creation and at every later decision."""

from __future__ import annotations

from typing import Any

import pytest

import policies
from catalog.errors import ALREADY_EXISTS, INVALID_REQUEST, NOT_FOUND_OR_FORBIDDEN, POLICY_DENIED, DomainError
from policies import Action, Budget, EntryKind

World = Any  # the `world` fixture (tests/unit/policies/conftest.py)


def test_only_admins_manage(world: World) -> None:
    for actor in (world.owner, world.regulator, world.bank):
        with pytest.raises(DomainError) as e:
            policies.add_entry(world.engine, actor, "purpose", "marketing")
        assert e.value.code == POLICY_DENIED
    entry = policies.add_entry(world.engine, world.admin, "purpose", "marketing", "no marketing", now=world.now)
    assert entry.kind is EntryKind.PURPOSE and entry.created_by == world.admin.name
    with pytest.raises(DomainError) as e:
        policies.remove_entry(world.engine, world.owner, entry.id)
    assert e.value.code == POLICY_DENIED
    assert [x.value for x in policies.list_entries(world.engine)] == ["marketing"]
    policies.remove_entry(world.engine, world.admin, entry.id)
    assert policies.list_entries(world.engine) == []
    with pytest.raises(DomainError) as e:
        policies.remove_entry(world.engine, world.admin, entry.id)
    assert e.value.code == NOT_FOUND_OR_FORBIDDEN


def test_duplicates_and_malformed(world: World) -> None:
    policies.add_entry(world.engine, world.admin, "column", "tax_income.monthly_income")
    with pytest.raises(DomainError) as e:
        policies.add_entry(world.engine, world.admin, "column", "tax_income.monthly_income")
    assert e.value.code == ALREADY_EXISTS
    for kind, value in [("column", "monthly_income"), ("column", "a.b.c"), ("dataset", "Tax"),
                        ("purpose", "Credit Risk"), ("table", "x")]:
        with pytest.raises(DomainError) as e:
            policies.add_entry(world.engine, world.admin, kind, value)
        assert e.value.code == INVALID_REQUEST


@pytest.mark.parametrize(
    ("kind", "value", "reason"),
    [
        ("dataset", "enterprise_registry", "dataset.negative_list"),
        ("column", "tax_income.monthly_income", "column.negative_list"),
        ("purpose", "credit_risk", "purpose.negative_list"),
    ],
)
def test_blocks_creation(world: World, kind: str, value: str, reason: str) -> None:
    policies.add_entry(world.engine, world.admin, kind, value)
    with pytest.raises(DomainError) as e:
        world.create()
    assert e.value.code == POLICY_DENIED
    assert [d["reason"] for d in e.value.details] == [reason]


@pytest.mark.parametrize(
    ("kind", "value", "reason"),
    [
        ("dataset", "enterprise_registry", "dataset.negative_list"),
        ("column", "tax_income.monthly_income", "column.negative_list"),
        ("purpose", "credit_risk", "purpose.negative_list"),
    ],
)
def test_later_addition_blocks_existing_agreement(world: World, kind: str, value: str, reason: str) -> None:
    ag = world.active()
    request: dict[str, Any] = {"datasets": ["tax_income"], "columns": {"tax_income": ["age"]}}
    assert policies.check(world.engine, world.bank, Action.QUERY_PREVIEW, ag.id, now=world.now, **request).allow
    policies.add_entry(world.engine, world.admin, kind, value)
    d = policies.check(world.engine, world.bank, Action.QUERY_PREVIEW, ag.id, now=world.now, **request)
    assert reason in d.codes
    with pytest.raises(DomainError) as e:
        policies.submit(world.engine, world.bank, ag.id, "query", {"sql": "select 1"}, datasets=["tax_income"],
                        columns={"tax_income": ["age"]}, cost=Budget.parse("0.1"), now=world.now)
    assert e.value.code == POLICY_DENIED
    # reads, suspension and revocation stay possible; resuming a blocked agreement does not
    assert policies.get_agreement(world.engine, world.regulator, ag.id, now=world.now).id == ag.id
    policies.suspend(world.engine, world.owner, ag.id, now=world.now)
    with pytest.raises(DomainError) as e:
        policies.resume(world.engine, world.owner, ag.id, now=world.now)
    assert e.value.code == POLICY_DENIED
    policies.revoke(world.engine, world.owner, ag.id, now=world.now)


def test_blocked_proposal_cannot_be_accepted(world: World) -> None:
    ag = world.create()
    policies.add_entry(world.engine, world.admin, "purpose", "credit_risk")
    with pytest.raises(DomainError) as e:
        policies.accept(world.engine, world.bank, ag.id, now=world.now)
    assert e.value.code == POLICY_DENIED
