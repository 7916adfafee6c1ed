"""Fixtures for verification products: the tax bureau's data registered, a bank agreement, the raw rows (to
compare answers with, read by the test only), and the standard products."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq
import pytest

INCOME_AT_LEAST = {"name": "income_at_least", "dataset": "tax_income", "subject_column": "person_id",
                   "predicate": "monthly_income >= :threshold", "params": {"threshold": "number"},
                   "description": "monthly income at least the threshold"}
DECLARED_INCOME = {"name": "declared_income", "dataset": "tax_income", "subject_column": "person_id",
                   "predicate": "abs(monthly_income - :declared) <= :tolerance * monthly_income",
                   "params": {"declared": "number", "tolerance": "number"}}
INSURED_AT_MOST = {"name": "insured_months_at_most", "dataset": "tax_income", "subject_column": "person_id",
                   "predicate": ":n >= social_insurance_months", "params": {"n": "integer"}}
EXISTS = {"name": "is_registered", "dataset": "tax_income", "subject_column": "id_number", "predicate": "exists",
          "params": {}}


@dataclass
class VerifyWorld:
    parties: Any
    agreement: dict[str, Any]
    rows: dict[str, dict[str, Any]]  # person_id -> raw row (the test's own knowledge, never the bank's)

    @property
    def bank(self) -> Any:
        return self.parties.bank

    @property
    def owner(self) -> Any:
        return self.parties.owner


@pytest.fixture
def product_specs() -> dict[str, dict[str, Any]]:
    return {s["name"]: dict(s) for s in (INCOME_AT_LEAST, DECLARED_INCOME, INSURED_AT_MOST, EXISTS)}


@pytest.fixture
def world(parties, city_data) -> VerifyWorld:
    for spec in (INCOME_AT_LEAST, DECLARED_INCOME, INSURED_AT_MOST, EXISTS):
        parties.owner.define_verification(spec)
    ag = parties.agreement("icbc-wuxi", quotas={"calls_per_day": 10000, "verify_per_subject_per_day": 3,
                                                "distinct_params_per_subject": 3})
    rows = {r["person_id"]: r for r in pq.read_table(city_data.tax_income).to_pylist()}
    return VerifyWorld(parties, ag, rows)
