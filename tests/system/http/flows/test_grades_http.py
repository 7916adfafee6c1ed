"""Grade controls over HTTP (docs/grades.md): the table served read-only (``GET /v1/policy/grades`` and
``veilbox policy grades``), and one refusal each — automatic approval and an ε above the ceiling on an important
dataset, a GROUP BY on a sensitive column below the grade's group size."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from catalog.columns import Grade
from policies import grades
from veilbox.cli import app
from veilbox.client import ApiError

SQL = "SELECT district, COUNT(*) AS n FROM tax_graded GROUP BY district"


def _refusal(fn, *a, **kw) -> ApiError:
    with pytest.raises(ApiError) as e:
        fn(*a, **kw)
    return e.value


@pytest.mark.parametrize("store", ["sqlite"])  # no new SQL: one store is enough
def test_the_grade_table_is_served_and_enforced(parties, city_data, monkeypatch):
    served = parties.operator.policy_grades()
    assert served == grades.table_json()
    monkeypatch.setenv("VEILBOX_URL", parties.service.url)
    monkeypatch.setenv("VEILBOX_TOKEN", parties.operator._http.headers["Authorization"].split()[1])
    cli = CliRunner().invoke(app, ["policy", "grades", "--json"])
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.output) == served

    src = parties.service.settings.owner_import_dirs("city-tax-bureau")[0] / "tax_graded.parquet"
    shutil.copy(city_data.tax_income, src)
    columns = {
        **parties.tax_spec["columns"],
        "district": {**parties.tax_spec["columns"]["district"], "sensitive": True},
    }
    spec = {**parties.tax_spec, "name": "tax_graded", "source": str(src), "grade": "important", "columns": columns}
    assert parties.owner.register_dataset(spec)["columns"]["district"]["sensitive"] is True
    scope = {"datasets": ["tax_graded"], "columns": {"tax_graded": ["district", "monthly_income"]}}
    ceiling = grades.GRADES[Grade.IMPORTANT].epsilon_ceiling

    e = _refusal(parties.agreement, **scope, budget={"epsilon": 1}, approval="auto_within_budget")
    assert (e.status, e.code) == (403, "POLICY_DENIED")
    assert [d["reason"] for d in e.details] == ["dataset.grade_requires_owner_approval"]
    e = _refusal(parties.agreement, **scope, budget={"epsilon": str(ceiling + 1)}, approval="owner_each_job")
    assert (e.code, [d["reason"] for d in e.details]) == ("POLICY_DENIED", ["dataset.grade_epsilon_ceiling"])

    need = grades.GRADES[Grade.IMPORTANT].sensitive_key_min_group_units
    small = parties.agreement(**scope, budget={"epsilon": 1}, approval="owner_each_job", min_group_units=need - 1)
    e = _refusal(parties.operator.preview_query, small["id"], SQL, 0.5)
    assert (e.code, [v["rule"] for v in e.details]) == ("QUERY_REJECTED", [grades.SENSITIVE_KEY_RULE])
    big = parties.agreement(**scope, budget={"epsilon": 1}, approval="owner_each_job", min_group_units=need)
    assert parties.operator.preview_query(big["id"], SQL, 0.5)["canonical_sql"]
