"""`veilbox consent import` reads ids from CSV or Parquet and batches them; `veilbox init` makes a home that
enforces the consent registry unless told otherwise."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from catalog.store import make_engine
from gateway.services.consent import enforced
from veilbox.cli import app
from veilbox.cli_consent import batches, read_subjects, when


def test_ids_are_read_from_csv_and_parquet_and_sent_in_batches(tmp_path: Path) -> None:
    (tmp_path / "ids.csv").write_text("name,person_id\na,P0001\nb,\nc, P0003 \n")
    assert read_subjects(tmp_path / "ids.csv", "person_id") == ["P0001", "P0003"]
    assert read_subjects(tmp_path / "ids.csv") == ["a", "b", "c"]  # the first column by default
    pq.write_table(pa.table({"pid": [7, None, 9]}), tmp_path / "ids.parquet")
    assert read_subjects(tmp_path / "ids.parquet") == ["7", "9"]
    with pytest.raises(Exception, match="no column"):
        read_subjects(tmp_path / "ids.parquet", "person_id")
    assert [len(b) for b in batches(list(range(2500)))] == [1000, 1000, 500]
    assert dt.datetime.fromisoformat(when("2027-03-01")) == dt.datetime(2027, 3, 1, tzinfo=dt.UTC)
    assert dt.datetime.fromisoformat(when("+30")) > dt.datetime.now(dt.UTC) + dt.timedelta(days=29)


def test_init_enforces_the_registry_by_default(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run = CliRunner().invoke(app, ["init", "--home", str(home), "--token-only"])
    assert run.exit_code == 0, run.output
    engine = make_engine(f"sqlite:///{home / 'meta.db'}")
    try:
        assert enforced(engine) is True  # `--no-consent-registry` leaves it off
    finally:
        engine.dispose()
