"""The declared DP SQL engine: ``duckdb`` by default (and for rows registered before the field existed),
``spark`` kept with the registration, refused without the Spark extra before anything is copied."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from catalog import _tables, registry
from catalog.columns import DatasetSpec
from catalog.errors import INVALID_REQUEST, DomainError
from catalog.store import make_engine


@pytest.fixture
def engine(tmp_path: Path):
    e = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    _tables.metadata.create_all(e)
    return e


def _spec(tmp_path: Path, **extra: object) -> DatasetSpec:
    roots = tmp_path / "import"
    roots.mkdir(exist_ok=True)
    src = roots / "d.parquet"
    pq.write_table(pa.table({"uid": ["a", "b"], "x": [1.0, 2.0]}), src)
    return DatasetSpec.model_validate({"name": "d", "source": str(src), "columns": {
        "uid": {"role": "id"}, "x": {"role": "measure", "bounds": [0, 10]}}, **extra})


def _register(engine, tmp_path: Path, spec: DatasetSpec) -> registry.Dataset:
    return registry.register(engine, spec, owner="o", data_dir=tmp_path / "data", import_roots=[tmp_path / "import"],
                             max_source_bytes=1 << 20).dataset


def test_engine_defaults_to_duckdb_and_only_two_are_known(engine, tmp_path):
    spec = _spec(tmp_path)
    assert spec.engine == "duckdb"
    ds = _register(engine, tmp_path, spec)
    assert ds.engine == "duckdb" and "engine" not in ds.ingest_report  # rows without it read as duckdb
    with pytest.raises(ValidationError):
        _spec(tmp_path, engine="presto")


def test_spark_engine_is_kept_with_the_registration(engine, tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "spark_installed", lambda: True)
    ds = _register(engine, tmp_path, _spec(tmp_path, engine="spark"))
    assert ds.engine == "spark" and registry.get(engine, "d").engine == "spark"


def test_spark_without_the_extra_is_refused_before_any_copy(engine, tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "spark_installed", lambda: False)
    with pytest.raises(DomainError) as e:
        _register(engine, tmp_path, _spec(tmp_path, engine="spark"))
    assert e.value.code == INVALID_REQUEST and e.value.details[0]["reason"] == "engine.spark_unavailable"
    assert registry.get(engine, "d") is None and not list((tmp_path / "data").glob("*"))
