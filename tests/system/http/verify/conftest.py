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


#: An integer-keyed register (the test's own rows): ``people_with`` holds person 7, ``people_without`` is the
#: same register without that one row — neighbouring datasets.
PEOPLE = [(pid, 1000.0 * pid, "A" if pid % 2 else "B") for pid in range(1, 21)]
PEOPLE_COLUMNS = {"pid": {"role": "id"}, "income": {"role": "measure", "bounds": [0, 200000]},
                  "district": {"role": "dimension", "domain": ["A", "B"]}}


def people_spec(name: str, source: str) -> dict[str, Any]:
    return {"name": name, "source": source, "grade": "general", "personal": True, "columns": PEOPLE_COLUMNS}


@dataclass
class People:
    """The integer-keyed registers, registered by the tax bureau, and one bank agreement per register."""

    world: VerifyWorld
    agreements: dict[str, dict[str, Any]]  # dataset -> agreement


@pytest.fixture
def people(world: VerifyWorld) -> People:
    import pyarrow as pa

    directory = world.parties.service.settings.import_roots[-1] / "city-tax-bureau"
    directory.mkdir(parents=True, exist_ok=True)
    agreements = {}
    for name, rows in (("people_with", PEOPLE), ("people_without", [r for r in PEOPLE if r[0] != 7])):
        path = directory / f"{name}.parquet"
        pq.write_table(pa.table({"pid": pa.array([r[0] for r in rows], pa.int64()),
                                 "income": [r[1] for r in rows], "district": [r[2] for r in rows]}), path)
        world.owner.register_dataset(people_spec(name, str(path)))
        world.owner.define_verification({"name": f"{name}_income_at_least", "dataset": name,
                                         "subject_column": "pid", "predicate": "income >= :t",
                                         "params": {"t": "number"}})
        agreements[name] = world.parties.agreement(
            "icbc-wuxi", datasets=[name], columns={name: ["income", "district"]},
            quotas={"calls_per_day": 10000, "verify_per_subject_per_day": 3, "distinct_params_per_subject": 3})
    return People(world, agreements)
