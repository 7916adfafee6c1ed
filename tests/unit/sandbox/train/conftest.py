"""Fixtures for DP-SGD tests: a registered synthetic ``tax_income`` and helpers to register small files."""

from __future__ import annotations

import json
from collections.abc import Callable
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

FEATURES = ["district", "age", "gender", "industry", "monthly_income", "tax_paid", "social_insurance_months"]
GRANTED = [*FEATURES, "has_default"]

Register = Callable[[str, pa.Table, dict[str, Any], int], Dataset]


@pytest.fixture(scope="session")
def train_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("train_home")


@pytest.fixture(scope="session")
def register_table(train_home: Path) -> Register:
    engine = make_engine(f"sqlite:///{train_home / 'meta.db'}")
    metadata.create_all(engine)
    incoming = train_home / "incoming"
    incoming.mkdir(exist_ok=True)

    def _register(name: str, table: pa.Table, columns: dict[str, Any], max_rows_per_unit: int = 1) -> Dataset:
        src = incoming / f"{name}.parquet"
        pq.write_table(table, src)
        spec = DatasetSpec.model_validate({"name": name, "source": str(src), "columns": columns,
                                           "max_rows_per_unit": max_rows_per_unit})
        return register(engine, spec, "owner", train_home / "data", [incoming], 1 << 30).dataset

    return _register


@pytest.fixture(scope="session")
def tax_income(train_home: Path, register_table: Register) -> Dataset:
    """10 000 synthetic people, registered as ``tax_income``."""
    gen = generate(train_home / "city", rows=10_000, seed=11)
    declared = json.loads(gen.tax_income_spec.read_text())
    return register_table("tax_income", pq.read_table(gen.tax_income), declared["columns"], 1)


@pytest.fixture
def base_spec() -> dict[str, Any]:
    return {"dataset": "tax_income", "features": list(FEATURES), "label": "has_default",
            "model": "logistic_regression", "epochs": 4, "batch_size": 256, "epsilon": 3.0, "delta": 1e-5,
            "max_grad_norm": 1.0}
