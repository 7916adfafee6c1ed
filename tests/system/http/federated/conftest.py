"""Federated training fixtures: the city split across five holders, a held-out city, the public encoding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalog.datagen import Generated, generate
from sandbox.train import FeatureEncoding
from veilbox.federated import encoding_from_declaration

HOLDERS = ("bank-north", "bank-south", "bank-east", "bank-west", "bank-centre")
FEATURES = ["age", "industry", "district", "monthly_income", "social_insurance_months"]


@pytest.fixture(scope="session")
def declaration(city_data: Generated) -> dict[str, Any]:
    return json.loads(city_data.tax_income_spec.read_text())


@pytest.fixture(scope="session")
def encoding(declaration: dict[str, Any]) -> FeatureEncoding:
    return encoding_from_declaration(declaration, FEATURES, "has_default")


@pytest.fixture(scope="session")
def holder_tables(city_data: Generated) -> dict[str, pa.Table]:
    """The 5000-row city split into five contiguous parts, one per holder."""
    table = pq.read_table(city_data.tax_income)
    size = table.num_rows // len(HOLDERS)
    return {name: table.slice(i * size, size) for i, name in enumerate(HOLDERS)}


@pytest.fixture(scope="session")
def holdout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another synthetic city (different seed): rows no model was trained on."""
    return generate(tmp_path_factory.mktemp("holdout"), rows=3000, seed=99).tax_income
