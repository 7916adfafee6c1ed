"""Grade-dependent controls (分级分类): the one table every grade rule is read from.

A dataset's owner declares its classification grade (`catalog.columns.Grade`: general 一般, important 重要,
core 核心) and may flag columns ``sensitive`` (`catalog.columns.ColumnSpec.sensitive`). `GRADES` says, per grade:

- ``grantable``: whether the dataset may be placed under an agreement at all (core: never). Checked at proposal
  and amendment and on every scoped decision (`policies.decision.scope_reasons`, reason ``dataset.core_grade``).
- ``approvals``: the approval modes an agreement over it may use. Important data needs the owner's approval of
  each job (``owner_each_job``): a proposal or amendment with ``auto_within_budget`` is refused, and so is every
  scoped action (job submission, queries, acceptance) of an agreement whose dataset's grade rose later
  (``POLICY_DENIED``, reason ``dataset.grade_requires_owner_approval``).
- ``epsilon_ceiling``: the highest per-dataset ε an agreement may allow (``None``: no ceiling). A proposal or
  amendment above it is refused (``POLICY_DENIED``, reason ``dataset.grade_epsilon_ceiling``). The service's
  settings may change the ceilings (``VEILBOX_GRADE_EPSILON_CEILINGS``, `gateway.settings.Settings`); the
  agreement keeps the budget it was accepted with.
- ``sensitive_key_min_group_units``: a sensitive column may be a group key (or appear in one) only when the
  agreement's ``min_group_units`` is at least this. The DP SQL planner (`sandbox.sql.service.prepare`) refuses
  the query before any data is read (``QUERY_REJECTED``, rule ``group.sensitive_key``): the decision depends on
  the declaration, the SQL and the agreement only, never on a row.

The table is served read-only (``GET /v1/policy/grades``, ``veilbox policy grades``) and docs/grades.md carries it
(`markdown_table`; tests/unit/policies/test_grades.py checks the page against the table).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType
from typing import Any

from catalog.columns import Grade
from catalog.registry import Dataset

OWNER_EACH_JOB, AUTO_WITHIN_BUDGET = "owner_each_job", "auto_within_budget"
APPROVAL_MODES = (OWNER_EACH_JOB, AUTO_WITHIN_BUDGET)

#: Reason codes (`policies.decision.MESSAGES`) of the grade rules checked on an agreement's scope.
CORE_GRADE = "dataset.core_grade"
NEEDS_OWNER_APPROVAL = "dataset.grade_requires_owner_approval"
ABOVE_EPSILON_CEILING = "dataset.grade_epsilon_ceiling"
#: The planner's rule name for a sensitive group key under too small a group size.
SENSITIVE_KEY_RULE = "group.sensitive_key"


@dataclass(frozen=True)
class GradeControls:
    """One grade's row of `GRADES`."""

    grade: Grade
    grantable: bool
    approvals: tuple[str, ...]
    epsilon_ceiling: Fraction | None
    sensitive_key_min_group_units: int

    def as_json(self) -> dict[str, Any]:
        """The row as served (ε as exact text, ``null`` for no ceiling)."""
        return {
            "grade": self.grade.value,
            "grantable": self.grantable,
            "approvals": list(self.approvals),
            "epsilon_ceiling": None if self.epsilon_ceiling is None else str(self.epsilon_ceiling),
            "sensitive_key_min_group_units": self.sensitive_key_min_group_units,
        }


GRADES: Mapping[Grade, GradeControls] = MappingProxyType(
    {
        Grade.GENERAL: GradeControls(
            Grade.GENERAL,
            grantable=True,
            approvals=APPROVAL_MODES,
            epsilon_ceiling=None,
            sensitive_key_min_group_units=50,
        ),
        Grade.IMPORTANT: GradeControls(
            Grade.IMPORTANT,
            grantable=True,
            approvals=(OWNER_EACH_JOB,),
            epsilon_ceiling=Fraction(4),
            sensitive_key_min_group_units=100,
        ),
        Grade.CORE: GradeControls(
            Grade.CORE, grantable=False, approvals=(), epsilon_ceiling=Fraction(0), sensitive_key_min_group_units=0
        ),
    }
)


def controls(grade: Grade | str) -> GradeControls:
    """The controls of ``grade``."""
    return GRADES[Grade(grade)]


def epsilon_ceiling(grade: Grade | str, overrides: Mapping[str, Fraction | None] | None = None) -> Fraction | None:
    """The ε ceiling of ``grade``: the service's override when it sets one for the grade, else the table's."""
    if overrides is not None and Grade(grade).value in overrides:
        return overrides[Grade(grade).value]
    return controls(grade).epsilon_ceiling


def scope_violations(
    datasets: Iterable[str],
    records: Mapping[str, Dataset | None],
    approval: str,
    epsilon: Fraction | None = None,
    ceilings: Mapping[str, Fraction | None] | None = None,
) -> list[tuple[str, str]]:
    """``(reason code, dataset)`` for every grade rule an agreement's scope breaks: a grade never granted, an
    approval mode the grade does not allow and, when ``epsilon`` (the agreement's per-dataset ε) is given, a
    budget above the grade's ceiling. Unregistered datasets are the caller's to report."""
    out: list[tuple[str, str]] = []
    for ds in datasets:
        rec = records.get(ds)
        if rec is None:
            continue
        row = controls(rec.grade)
        if not row.grantable:
            out.append((CORE_GRADE, ds))
            continue
        if approval not in row.approvals:
            out.append((NEEDS_OWNER_APPROVAL, ds))
        ceiling = epsilon_ceiling(rec.grade, ceilings)
        if epsilon is not None and ceiling is not None and epsilon > ceiling:
            out.append((ABOVE_EPSILON_CEILING, ds))
    return out


def sensitive_key_violations(dataset: Dataset, key_columns: Iterable[str], min_group_units: int) -> list[str]:
    """The sensitive columns among ``key_columns`` that the group size ``min_group_units`` does not protect
    enough for ``dataset``'s grade (sorted; empty when the query may group on them)."""
    needed = controls(dataset.grade).sensitive_key_min_group_units
    return sorted(
        c
        for c in set(key_columns)
        if (info := dataset.columns.get(c)) is not None and info.sensitive and min_group_units < needed
    )


def table_json(ceilings: Mapping[str, Fraction | None] | None = None) -> list[dict[str, Any]]:
    """The table as served, with the service's ε ceilings in force."""
    return [{**row.as_json(), "epsilon_ceiling": _text(epsilon_ceiling(g, ceilings))} for g, row in GRADES.items()]


def _text(v: Fraction | None) -> str | None:
    return None if v is None else str(v)


def markdown_table() -> str:
    """The table as docs/grades.md shows it (the defaults; tests check the page against this)."""
    lines = [
        "| grade | may be granted | approval modes allowed | default ε ceiling (per dataset) "
        "| min group units for a sensitive key |",
        "|---|---|---|---|---|",
    ]
    for g, row in GRADES.items():
        approvals = ", ".join(f"`{a}`" for a in row.approvals) or "—"
        ceiling = "none" if row.epsilon_ceiling is None else str(row.epsilon_ceiling)
        if not row.grantable:
            ceiling, key_min = "—", "—"
        else:
            key_min = str(row.sensitive_key_min_group_units)
        lines.append(f"| `{g.value}` | {'yes' if row.grantable else 'never'} | {approvals} | {ceiling} | {key_min} |")
    return "\n".join(lines) + "\n"
