"""Fixtures for the policies tests: a metadata store with four small registered datasets, and a `World`
(actors, a fixed clock, agreement-document and agreement factories).

The datasets are registered once per session into a template SQLite file through `catalog.registry.register`
(real Parquet files written with pyarrow); each test gets its own copy of that file.
"""

from __future__ import annotations

import copy
import datetime as dt
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine

import policies
from catalog import _tables as catalog_tables
from catalog.columns import DatasetSpec
from catalog.registry import register
from catalog.store import make_engine
from policies import Actor
from tests.pg import PgServer

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
VALID_FROM = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
VALID_UNTIL = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)

OWNER = Actor("tax-bureau", "owner")
OTHER_OWNER = Actor("hr-bureau", "owner")
BANK = Actor("icbc-wuxi", "bank")
OPERATOR = Actor("city-ops", "operator")
STRANGER_BANK = Actor("other-bank", "bank")
REGULATOR = Actor("cac-wuxi", "regulator")
ADMIN = Actor("root", "admin")

N = 40
DISTRICTS = ["Liangxi", "Xinwu", "Binhu"]


def _write(path: Path, columns: dict[str, list[Any]]) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def _specs(src: Path) -> list[tuple[dict[str, Any], str]]:
    tax = _write(src / "tax_income.parquet", {
        "person_id": [f"P{i:04d}" for i in range(N)],
        "id_number": [f"3202{i:014d}" for i in range(N)],
        "district": [DISTRICTS[i % 3] for i in range(N)],
        "age": [20 + i for i in range(N)],
        "monthly_income": [1000.0 * (i + 1) for i in range(N)],
        "employer_id": [f"E{i % 5:03d}" for i in range(N)],
        "has_default": [i % 2 for i in range(N)],
    })
    ent = _write(src / "enterprise_registry.parquet", {
        "employer_id": [f"E{i:03d}" for i in range(5)],
        "district": [DISTRICTS[i % 3] for i in range(5)],
        "employees": [10 * (i + 1) for i in range(5)],
    })
    social = _write(src / "social_insurance.parquet", {
        "person_id": [f"P{i:04d}" for i in range(N)],
        "months": [i for i in range(N)],
    })
    core = _write(src / "state_secrets.parquet", {
        "unit_id": [f"U{i}" for i in range(5)],
        "level": [i for i in range(5)],
    })
    return [
        ({"name": "tax_income", "source": str(tax), "grade": "general", "personal": True,
          "columns": {"person_id": {"role": "id"}, "id_number": {"role": "never_output"},
                      "district": {"role": "dimension", "domain": DISTRICTS},
                      "age": {"role": "dimension", "bounds": [16, 100]},
                      "monthly_income": {"role": "measure", "bounds": [0, 200000]},
                      "employer_id": {"role": "join_key"},
                      "has_default": {"role": "dimension", "domain": [0, 1]}}}, OWNER.name),
        ({"name": "enterprise_registry", "source": str(ent), "grade": "general",
          "columns": {"employer_id": {"role": "id"},
                      "district": {"role": "dimension", "domain": DISTRICTS},
                      "employees": {"role": "measure", "bounds": [0, 100000]}}}, OWNER.name),
        ({"name": "social_insurance", "source": str(social), "grade": "general",
          "columns": {"person_id": {"role": "id"}, "months": {"role": "measure", "bounds": [0, 480]}}},
         OTHER_OWNER.name),
        ({"name": "state_secrets", "source": str(core), "grade": "core",
          "columns": {"unit_id": {"role": "id"}, "level": {"role": "measure", "bounds": [0, 10]}}}, OWNER.name),
    ]


def _build_template(root: Path, url: str) -> None:
    src, data = root / "src", root / "data"
    src.mkdir()
    data.mkdir()
    engine = make_engine(url)
    catalog_tables.metadata.create_all(engine)
    policies.metadata.create_all(engine)
    for spec, owner in _specs(src):
        register(engine, DatasetSpec.model_validate(spec), owner, data, [root], 10**8)
    engine.dispose()


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("policies-template")
    db = root / "meta.db"
    _build_template(root, f"sqlite:///{db}")
    return db


@pytest.fixture(scope="session")
def pg_template(tmp_path_factory: pytest.TempPathFactory, pg_server: PgServer) -> str:
    """The same four datasets registered once into a PostgreSQL database each test copies (``TEMPLATE``)."""
    url = pg_server.create_database()
    _build_template(tmp_path_factory.mktemp("policies-pg-template"), url)
    return url.rsplit("/", 1)[1]


@pytest.fixture
def engine(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """A store with the four datasets: a copy of the SQLite template, or of the PostgreSQL one."""
    if store == "postgresql":
        server: PgServer = request.getfixturevalue("pg_server")
        url = server.create_database(template=request.getfixturevalue("pg_template"))
        eng = make_engine(url)
        yield eng
        eng.dispose()
        server.drop_database(url)
        return
    db = tmp_path / "meta.db"
    shutil.copyfile(request.getfixturevalue("template_db"), db)
    eng = make_engine(f"sqlite:///{db}")
    yield eng
    eng.dispose()


BASE_DOCUMENT: dict[str, Any] = {
    "title": "SME credit model",
    "grantee": BANK.name,
    "datasets": ["tax_income", "enterprise_registry"],
    "columns": {"tax_income": ["district", "age", "monthly_income", "has_default"],
                "enterprise_registry": ["district", "employees"]},
    "purposes": ["credit_risk"],
    "job_kinds": ["query", "train", "code", "verify", "score"],
    "valid_from": "2026-01-01T00:00:00Z",
    "valid_until": "2027-01-01T00:00:00Z",
    "budget": {"epsilon": 1.0, "delta": 1e-6},
    "min_group_units": 20,
    "quotas": {"calls_per_day": 1000, "verify_per_subject_per_day": 3, "jobs_per_day": 100},
    "approval": "owner_each_job",
    "exit": {"on_expiry": "seal_outputs"},
}


def document(**overrides: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE_DOCUMENT)
    doc.update(overrides)
    return doc


@dataclass
class World:
    """The test world: an engine, a fixed clock and the principals (plain values)."""

    engine: Engine
    now: dt.datetime = NOW
    valid_from: dt.datetime = VALID_FROM
    valid_until: dt.datetime = VALID_UNTIL
    owner: Actor = OWNER
    other_owner: Actor = OTHER_OWNER
    bank: Actor = BANK
    operator: Actor = OPERATOR
    stranger: Actor = STRANGER_BANK
    regulator: Actor = REGULATOR
    admin: Actor = ADMIN

    @staticmethod
    def document(**overrides: Any) -> dict[str, Any]:
        return document(**overrides)

    def create(self, **overrides: Any) -> policies.Agreement:
        return policies.create_agreement(self.engine, OWNER, document(**overrides), now=self.now)

    def active(self, **overrides: Any) -> policies.Agreement:
        ag = self.create(**overrides)
        grantee = Actor(ag.grantee, OPERATOR.role if ag.grantee == OPERATOR.name else BANK.role)
        return policies.accept(self.engine, grantee, ag.id, now=self.now)


@pytest.fixture
def world(engine: Engine) -> World:
    return World(engine)
