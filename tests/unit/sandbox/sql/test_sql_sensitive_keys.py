"""Sensitive group keys (`policies.grades`): the planner refuses GROUP BY on a column flagged sensitive unless the
agreement's ``min_group_units`` reaches the dataset's grade minimum — from the declaration only, so the refusal is
the same on neighbouring datasets (one person's row more or less) and no data is read."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from catalog.columns import ColumnInfo, ColumnSpec, Grade, Kind, Role
from catalog.errors import DomainError
from catalog.registry import Dataset
from policies import grades
from sandbox import TableView, prepare

COLUMNS = {
    "person_id": ColumnInfo(role=Role.ID, kind=Kind.STRING),
    "district": ColumnInfo(role=Role.DIMENSION, kind=Kind.STRING, domain=("Liangxi", "Xinwu"), sensitive=True),
    "age": ColumnInfo(role=Role.DIMENSION, kind=Kind.INTEGER, bounds=(16, 100)),
    "income": ColumnInfo(role=Role.MEASURE, kind=Kind.FLOAT, bounds=(0, 1000)),
}
SENSITIVE = (
    "SELECT district, COUNT(*) FROM people GROUP BY district",
    "SELECT CASE WHEN district = 'Liangxi' THEN 1 ELSE 0 END AS l, SUM(income) FROM people GROUP BY l",
)
PLAIN = "SELECT age, COUNT(*) FROM people GROUP BY age"


def dataset(grade: Grade, rows: int, where: Path) -> Dataset:
    """A declaration-only record (its file does not exist: planning must not need it)."""
    return Dataset(
        name="people",
        owner="o",
        description="",
        grade=grade,
        personal=True,
        sensitive=False,
        columns=COLUMNS,
        max_rows_per_unit=1,
        fingerprint=f"sha256:{rows:064x}",
        rows=rows,
        bytes=rows * 40,
        path=where / f"people-{rows}.parquet",
        ingest_report={},
        created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )


def plan(ds: Dataset, sql: str, min_group_units: int) -> None:
    prepare(sql, {"people": TableView(ds, frozenset(ds.columns))}, 1, 0, min_group_units=min_group_units)


def refusal(ds: Dataset, sql: str, min_group_units: int) -> tuple[str, str, list[dict[str, str]]]:
    with pytest.raises(DomainError) as e:
        plan(ds, sql, min_group_units)
    return e.value.code, e.value.message, e.value.details


@pytest.mark.parametrize("grade", [g for g, row in grades.GRADES.items() if row.grantable])
@pytest.mark.parametrize("sql", SENSITIVE)
def test_the_grade_minimum_decides_and_neighbours_are_refused_alike(grade: Grade, sql: str, tmp_path: Path) -> None:
    need = grades.GRADES[grade].sensitive_key_min_group_units
    d, neighbour = dataset(grade, 1000, tmp_path), dataset(grade, 999, tmp_path)  # one unit removed
    got = refusal(d, sql, need - 1)
    assert got[0] == "QUERY_REJECTED"
    assert [(v["rule"], v["at"]) for v in got[2]] == [(grades.SENSITIVE_KEY_RULE, "group")]
    assert "district" in got[2][0]["hint"] and str(need) in got[2][0]["hint"]
    assert refusal(neighbour, sql, need - 1) == got  # identical: nothing per person decides it
    plan(d, sql, need)  # the grade's minimum group size is enough
    plan(d, PLAIN, 1)  # keys on columns not flagged are unaffected


def test_no_suppression_means_no_sensitive_key(tmp_path: Path) -> None:
    code, _, details = refusal(dataset(Grade.GENERAL, 10, tmp_path), SENSITIVE[0], 0)
    assert code == "QUERY_REJECTED" and details[0]["rule"] == grades.SENSITIVE_KEY_RULE


def test_the_flag_is_declared_strictly_and_shown_only_when_set() -> None:
    with pytest.raises(ValueError):
        ColumnSpec.model_validate({"role": "dimension", "domain": ["a"], "sensitive": "yes"})
    assert COLUMNS["district"].public()["sensitive"] is True
    assert "sensitive" not in COLUMNS["age"].public()
