"""A dataset declared ``engine: spark`` over real HTTP: the same vetted DP query is released with noise and
debits the ledger exactly as on DuckDB; a construct that differs on Spark is refused at submission; without the
Spark extra the registration and the query fail closed with a stable code (never a 500)."""

from __future__ import annotations

from fractions import Fraction

import pytest

import catalog.registry
import sandbox.engine.spark
from sandbox.engine.spark import available
from veilbox.client import ApiError

pytestmark = pytest.mark.skipif(not available(), reason="the Spark extra (pyspark, java) is not installed")

COLUMNS = ["district", "age", "gender", "industry", "monthly_income", "tax_paid", "social_insurance_months"]


def _spark_agreement(parties, name: str = "tax_spark") -> dict:
    return parties.agreement(datasets=[name], columns={name: COLUMNS}, budget={"epsilon": 5})


def test_dp_query_on_spark_is_released_and_debited_as_on_duckdb(parties):
    ds = parties.owner.register_dataset({**parties.tax_spec, "name": "tax_spark", "engine": "spark"})
    assert ds["name"] == "tax_spark"
    ag = _spark_agreement(parties)
    r = parties.operator.query(ag["id"], "SELECT district, COUNT(*) AS n, AVG(monthly_income) AS a "
                                         "FROM tax_spark WHERE age >= 30 GROUP BY district", "0.5")
    assert r["state"] == "released", r
    assert r["cost"]["epsilon"] == 0.5 and r["output_digest"].startswith("sha256:")
    assert r["columns"] == ["district", "n", "a"] and len(r["rows"]) + r["suppressed_groups"] == 7
    assert Fraction(parties.operator.budget(ag["id"])["exact"]["epsilon_spent"]) == Fraction(1, 2)
    # the same question on the DuckDB copy of the same file: same shape, same price
    duck = parties.agreement(budget={"epsilon": 5})
    d = parties.operator.query(duck["id"], "SELECT district, COUNT(*) AS n, AVG(monthly_income) AS a "
                                           "FROM tax_income WHERE age >= 30 GROUP BY district", "0.5")
    assert d["columns"] == r["columns"] and d["cost"] == r["cost"]
    assert set(d) == set(r)


def test_without_the_spark_extra_registration_and_queries_fail_closed(parties, monkeypatch):
    parties.owner.register_dataset({**parties.tax_spec, "name": "tax_spark2", "engine": "spark"})
    ag = _spark_agreement(parties, "tax_spark2")
    monkeypatch.setattr(catalog.registry, "spark_installed", lambda: False)
    monkeypatch.setattr(sandbox.engine.spark, "available", lambda: False)
    with pytest.raises(ApiError) as e:
        parties.owner.register_dataset({**parties.tax_spec, "name": "tax_spark3", "engine": "spark"})
    assert e.value.code == "INVALID_REQUEST" and e.value.details[0]["reason"] == "engine.spark_unavailable"
    with pytest.raises(ApiError) as e:
        parties.operator.query(ag["id"], "SELECT COUNT(*) AS n FROM tax_spark2", "0.5")
    assert e.value.code == "UNAVAILABLE" and e.value.details[0]["reason"] == "engine.spark_unavailable"
    assert parties.operator.budget(ag["id"])["exact"]["epsilon_spent"] == "0"
