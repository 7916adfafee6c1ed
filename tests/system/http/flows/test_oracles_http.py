"""The error-oracle templates over real HTTP with the real worker: what the grantee observes of a query whose
predicate matches one person's row (``B`` just below their income) equals what it observes when it matches none
(``B`` just above) — status, error code and rules, job state, failure reason, refund, ε charged, response,
result and review keys, and its own audit entries. Only the noisy numbers may differ.

The templates are the public ones (tests/data/attacks/oracles.jsonl) and ours (oracles_own.jsonl); the sandbox
tests (tests/unit/sandbox/sql/test_sql_neighbours.py) check the stronger property that the canonical SQL never fails
on any neighbouring dataset.
"""

from __future__ import annotations

import json
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import ON_BOTH_STORES
from tests.system.http.flows.test_queries_http import _last_seq, _own_view, _public_job
from tests.unit.sandbox.sql.sqlgen import Target
from tests.unit.sandbox.sql.test_sql_neighbours import _k, build
from veilbox.client import ApiError

ATTACKS = Path(__file__).resolve().parents[3] / "data" / "attacks"


def _templates() -> list[dict[str, Any]]:
    out = []
    for name in ("oracles.jsonl", "oracles_own.jsonl"):
        out += [json.loads(line) for line in (ATTACKS / name).read_text().splitlines() if line.strip()]
    return out


TEMPLATES = _templates()


@pytest.fixture
def target(city_data: Any) -> Target:
    """A person alone in their (district, age, gender, industry) cell of the registered city."""
    rows = pq.read_table(city_data.tax_income).to_pylist()
    cells = Counter((r["district"], r["age"], r["gender"], r["industry"]) for r in rows)
    row = next(r for r in rows if cells[(r["district"], r["age"], r["gender"], r["industry"])] == 1)
    return Target(district=row["district"], age=row["age"], gender=row["gender"], industry=row["industry"],
                  income=row["monthly_income"], extra=(str(_k(row["monthly_income"])),))


def _observe(parties: Any, ag_id: str, sql: str) -> dict[str, Any]:
    """Everything the grantee can see of one query, answered or refused, without the noisy numbers."""
    before = Fraction(parties.operator.budget(ag_id)["exact"]["epsilon_spent"])
    since = _last_seq(parties)
    try:
        r = parties.operator.query(ag_id, sql, "0.5")
    except ApiError as e:
        seen: dict[str, Any] = {"status": e.status, "code": e.code, "message": e.message,
                                "rules": sorted((d.get("rule"), d.get("hint"), d.get("reason"))
                                                for d in e.details)}
    else:
        job = parties.operator.job(r["job_id"])
        res = parties.operator.job_result(r["job_id"])
        review = parties.operator.job_review(r["job_id"])
        seen = {"status": 200, "keys": sorted(r), "state": r["state"], "columns": r["columns"],
                "cost": r["cost"], "groups": len(r["rows"]) + r["suppressed_groups"],
                "error_bar_keys": sorted(r["error_bars"]), "job": _public_job(job),
                "result_keys": sorted(res["result"]), "review_keys": sorted(review)}
        seen["job"].pop("spec", None)  # the caller's own SQL, which differs by B
        seen["job"].pop("spec_hash", None)
    seen["spent"] = Fraction(parties.operator.budget(ag_id)["exact"]["epsilon_spent"]) - before
    seen["audit"] = [e[:11] for e in _own_view(parties.operator, since)]  # details quote the caller's SQL hash
    return seen


@pytest.mark.parametrize("template", TEMPLATES, ids=[t["name"] for t in TEMPLATES])
def test_one_persons_row_changes_nothing_but_the_noise(parties: Any, target: Target,
                                                      template: dict[str, Any]) -> None:
    ag = parties.agreement(budget={"epsilon": 10})
    below, above = target.income - 0.01, target.income + 0.01  # matches the target's row / matches no row
    matched = _observe(parties, ag["id"], build(template, target, below))
    unmatched = _observe(parties, ag["id"], build(template, target, above))
    assert matched == unmatched, template["name"]
    assert matched["status"] in (200, 422), matched  # released, or refused by the vetter before any data
    if matched["status"] == 200:
        assert matched["state"] == "released" and matched["job"]["failure_reason"] is None
        assert matched["spent"] == Fraction(1, 2)
    else:
        assert matched["code"] == "QUERY_REJECTED" and matched["spent"] == 0
    if template.get("expect") == "answered":
        assert matched["status"] == 200, matched


@ON_BOTH_STORES
def test_the_issue_example_is_released_on_both_sides(parties: Any, target: Target) -> None:
    ag = parties.agreement(budget={"epsilon": 10})
    sql = ("SELECT COUNT(*) FROM tax_income WHERE CASE WHEN {cell} AND monthly_income > {b:.2f} "
           "THEN 999999999999999 * 999999999999999 ELSE 0 END = 0")
    seen = [_observe(parties, ag["id"], sql.format(cell=target.cell, b=b))
            for b in (target.income - 0.01, target.income + 0.01)]
    assert seen[0] == seen[1] and seen[0]["status"] == 200 and seen[0]["state"] == "released"
