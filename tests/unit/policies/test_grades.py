"""The grade-dependent controls (`policies.grades`): the one table drives every grade rule — granting, the
approval modes, the ε ceiling (with the service's overrides) at proposal and amendment, and the approval rule again
on every scoped action of an agreement whose dataset's grade rose later; docs/grades.md shows the table."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

import policies
from catalog import _tables as catalog_tables
from catalog.columns import Grade
from catalog.errors import POLICY_DENIED, DomainError
from policies import grades, ledger
from policies.budget import Budget

SQLITE = pytest.mark.parametrize("store", ["sqlite"])  # no new SQL: one store is enough

World = Any  # the `world` fixture (tests/unit/policies/conftest.py)
ENT = {
    "datasets": ["enterprise_registry"],
    "columns": {"enterprise_registry": ["district", "employees"]},
    "purposes": [],
}
DOCS = Path(__file__).resolve().parents[3] / "docs" / "grades.md"


def set_grade(world: World, dataset: str, grade: Grade) -> None:
    """What a re-grading by the owner would leave in the catalog (no route changes a grade today)."""
    with world.engine.begin() as conn:
        conn.execute(
            update(catalog_tables.datasets).where(catalog_tables.datasets.c.name == dataset).values(grade=grade.value)
        )


def reasons(e: DomainError) -> list[str]:
    return [d["reason"] for d in e.details]


def expected_for(grade: Grade, approval: str, epsilon: Fraction) -> list[str]:
    """The reasons the table implies, written from the row (not from the code that enforces it)."""
    row = grades.GRADES[grade]
    if not row.grantable:
        return ["dataset.core_grade"]
    out = [] if approval in row.approvals else ["dataset.grade_requires_owner_approval"]
    if row.epsilon_ceiling is not None and epsilon > row.epsilon_ceiling:
        out.append("dataset.grade_epsilon_ceiling")
    return out


def _ceilings() -> list[Fraction]:
    return sorted(
        {
            c
            for r in grades.GRADES.values()
            if r.grantable and r.epsilon_ceiling
            for c in (r.epsilon_ceiling, r.epsilon_ceiling + Fraction(1, 10))
        }
        | {Fraction(1)}
    )


@SQLITE
@pytest.mark.parametrize("grade", list(grades.GRADES))
@pytest.mark.parametrize("approval", grades.APPROVAL_MODES)
@pytest.mark.parametrize("epsilon", _ceilings())
def test_the_table_decides_every_proposal(world: World, grade: Grade, approval: str, epsilon: Fraction) -> None:
    set_grade(world, "enterprise_registry", grade)
    want = expected_for(grade, approval, epsilon)
    doc = {**ENT, "approval": approval, "budget": {"epsilon": str(epsilon)}}
    if not want:
        assert world.create(**doc).document.approval == approval
        return
    with pytest.raises(DomainError) as e:
        world.create(**doc)
    assert e.value.code == POLICY_DENIED and reasons(e.value) == want
    assert {d.get("dataset") for d in e.value.details} == {"enterprise_registry"}


@SQLITE
def test_the_services_ceiling_replaces_the_tables(world: World) -> None:
    set_grade(world, "enterprise_registry", Grade.IMPORTANT)
    ceiling = grades.GRADES[Grade.IMPORTANT].epsilon_ceiling
    assert ceiling is not None
    above = {**ENT, "budget": {"epsilon": str(ceiling + 1)}}
    ag = policies.create_agreement(
        world.engine, world.owner, world.document(**above), now=world.now, grade_ceilings={"important": ceiling + 1}
    )
    assert ag.document.budget.epsilon == ceiling + 1
    with pytest.raises(DomainError) as e:  # a lower ceiling of the service refuses what the table would allow
        policies.create_agreement(
            world.engine,
            world.owner,
            world.document(**{**ENT, "budget": {"epsilon": "1"}}),
            now=world.now,
            grade_ceilings={"important": Fraction(1, 2)},
        )
    assert reasons(e.value) == ["dataset.grade_epsilon_ceiling"]
    lifted = policies.create_agreement(
        world.engine,
        world.owner,
        world.document(**{**ENT, "budget": {"epsilon": 99}}),
        now=world.now,
        grade_ceilings={"important": None},
    )
    assert lifted.document.budget.epsilon == 99


@SQLITE
def test_amendment_is_held_to_the_same_table(world: World) -> None:
    set_grade(world, "enterprise_registry", Grade.IMPORTANT)
    ag = world.create(**ENT)
    with pytest.raises(DomainError) as e:
        policies.amend_agreement(
            world.engine, world.owner, ag.id, world.document(**ENT, approval="auto_within_budget"), now=world.now
        )
    assert e.value.code == POLICY_DENIED and reasons(e.value) == ["dataset.grade_requires_owner_approval"]


@SQLITE
def test_a_grade_raised_later_stops_automatic_jobs_at_submission(world: World) -> None:
    ag = world.active(**ENT, grantee=world.operator.name, approval="auto_within_budget")
    set_grade(world, "enterprise_registry", Grade.IMPORTANT)
    with pytest.raises(DomainError) as e:
        policies.submit(
            world.engine,
            world.operator,
            ag.id,
            "query",
            {"sql": "SELECT 1", "epsilon": "0.1"},
            datasets=["enterprise_registry"],
            columns={"enterprise_registry": ["district"]},
            cost=Budget.parse("0.1", "0"),
            now=world.now,
        )
    assert e.value.code == POLICY_DENIED
    assert reasons(e.value) == ["dataset.grade_requires_owner_approval"]
    assert ledger.status(world.engine, ag.id).spent == Budget.parse("0", "0")


def test_the_docs_page_shows_the_table() -> None:
    assert grades.markdown_table() in DOCS.read_text(encoding="utf-8")


def test_the_served_table_applies_the_services_ceilings() -> None:
    served = {r["grade"]: r for r in grades.table_json({"important": Fraction(3, 2)})}
    assert served["important"]["epsilon_ceiling"] == "3/2"
    assert served["general"] == grades.GRADES[Grade.GENERAL].as_json()
    assert [r["grade"] for r in grades.table_json()] == [g.value for g in grades.GRADES]
