"""The mock is generated from the declaration only and never reproduces a raw id or row."""

import inspect
import json

import pyarrow.parquet as pq
import pytest

from catalog import _tables, registry
from catalog.columns import DatasetSpec, Role
from catalog.mock import mock_table
from catalog.store import make_engine


@pytest.fixture(scope="module")
def tax(city_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mockreg")
    e = make_engine(f"sqlite:///{tmp / 'm.db'}")
    _tables.metadata.create_all(e)
    spec = DatasetSpec.model_validate(json.loads(city_data.tax_income_spec.read_text()))
    return registry.register(e, spec, "o", tmp / "data", [city_data.tax_income.parent], 10**9).dataset


def test_mock_cannot_see_data():
    assert list(inspect.signature(mock_table).parameters) == ["name", "columns", "rows", "seed"]


def test_deterministic_per_seed(tax):
    a = mock_table(tax.name, tax.columns, 50, seed=1)
    assert a.equals(mock_table(tax.name, tax.columns, 50, seed=1))
    assert not a.equals(mock_table(tax.name, tax.columns, 50, seed=2))


def test_respects_declaration(tax):
    m = mock_table(tax.name, tax.columns, 2000, seed=3)
    for c, info in tax.columns.items():
        vals = m[c].to_pylist()
        if info.role is Role.DIMENSION and info.domain:
            assert set(vals) <= set(info.domain)
        if info.bounds:
            assert info.bounds[0] <= min(vals) and max(vals) <= info.bounds[1]


def test_no_mock_id_or_row_equals_a_raw_one(tax):
    raw = pq.read_table(tax.path)
    mock = mock_table(tax.name, tax.columns, 10_000, seed=0)
    for c in tax.columns_with(Role.ID, Role.NEVER_OUTPUT, Role.JOIN_KEY):
        assert not set(mock[c].to_pylist()) & set(raw[c].to_pylist())
    cols = raw.column_names
    raw_rows = set(zip(*(raw[c].to_pylist() for c in cols), strict=True))
    mock_rows = set(zip(*(mock[c].to_pylist() for c in cols), strict=True))
    assert not raw_rows & mock_rows
    # also the non-identifying part of the tuple
    nid = [c for c in cols if tax.columns[c].role in (Role.DIMENSION, Role.MEASURE)]
    raw_v = set(zip(*(raw[c].to_pylist() for c in nid), strict=True))
    mock_v = set(zip(*(mock[c].to_pylist() for c in nid), strict=True))
    assert not raw_v & mock_v
