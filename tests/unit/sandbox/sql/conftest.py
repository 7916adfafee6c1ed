"""Fixtures for the private SQL engine: a registered synthetic ``tax_income`` and a running worker."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalog._tables import metadata
from catalog.columns import DatasetSpec
from catalog.datagen import generate
from catalog.registry import Dataset, register
from catalog.store import make_engine
from sandbox import QueryWorker, TableView

GRANTED = frozenset(["district", "age", "gender", "industry", "monthly_income", "tax_paid",
                     "social_insurance_months"])
ROWS = 20_000


class Home:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.engine = make_engine(f"sqlite:///{root / 'meta.db'}")
        metadata.create_all(self.engine)
        self.incoming = root / "incoming"
        self.incoming.mkdir(exist_ok=True)

    def register(self, spec: dict[str, Any]) -> Dataset:
        reg = register(self.engine, DatasetSpec.model_validate(spec), owner="owner", data_dir=self.root / "data",
                       import_roots=[self.incoming], max_source_bytes=1 << 30)
        return reg.dataset


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return Home(tmp_path_factory.mktemp("sqlhome"))


@pytest.fixture(scope="session")
def datasets(home: Home) -> dict[str, Dataset]:
    gen = generate(home.incoming, rows=ROWS)
    tax = home.register(json.loads(gen.tax_income_spec.read_text()))
    ent = home.register(json.loads(gen.enterprise_registry_spec.read_text()))
    return {"tax_income": tax, "enterprise_registry": ent}


@pytest.fixture(scope="session")
def tables(datasets: dict[str, Dataset]) -> dict[str, TableView]:
    """The agreement of tests/data/attacks/README.md: tax_income with seven granted columns."""
    return {"tax_income": TableView(datasets["tax_income"], GRANTED)}


@pytest.fixture(scope="session")
def two_tables(datasets: dict[str, Dataset]) -> dict[str, TableView]:
    ent = datasets["enterprise_registry"]
    return {
        "tax_income": TableView(datasets["tax_income"], GRANTED | {"employer_id"}),
        "enterprise_registry": TableView(ent, frozenset(ent.columns)),
    }


@pytest.fixture(scope="session")
def worker(datasets: dict[str, Dataset]) -> Iterator[QueryWorker]:
    w = QueryWorker({n: d.path for n, d in datasets.items()}, threads=2, memory_limit="1GB", timeout_s=60)
    w.start()
    yield w
    w.stop()


@pytest.fixture(scope="session")
def exact(datasets: dict[str, Dataset]) -> Callable[[str], list[tuple[Any, ...]]]:
    """Exact answers straight from the Parquet copy (test oracle only)."""
    import duckdb

    path = datasets["tax_income"].path

    def _q(sql: str) -> list[tuple[Any, ...]]:
        con = duckdb.connect()
        con.execute(f"CREATE VIEW tax_income AS SELECT * FROM read_parquet('{path}')")
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    return _q


@pytest.fixture(scope="session")
def register_units(home: Home) -> Callable[[str, int, int], Dataset]:
    """Register a table where each of ``units`` units has ``per_unit`` rows, declared ``max_rows_per_unit``."""

    def _reg(name: str, units: int, per_unit: int, max_rows: int = 1) -> Dataset:
        ids = [f"U{u:05d}" for u in range(units) for _ in range(per_unit)]
        t = pa.table({"uid": ids, "region": ["a" if i % 2 else "b" for i in range(len(ids))],
                      "amount": [10.0] * len(ids)})
        src = home.incoming / f"{name}.parquet"
        pq.write_table(t, src)
        return home.register({
            "name": name, "source": str(src), "max_rows_per_unit": max_rows,
            "columns": {"uid": {"role": "id"}, "region": {"role": "dimension", "domain": ["a", "b"]},
                        "amount": {"role": "measure", "bounds": [0, 100]}},
        })

    return _reg
