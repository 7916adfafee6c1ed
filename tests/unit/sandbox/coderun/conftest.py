"""Fixtures for the custom-code sandbox tests: small Parquet inputs, fast limits, per-test sandbox uids.

The sandbox needs root (it drops to a per-run uid) and bubblewrap. Not root: the end-to-end tests skip (the
runner refuses by design, which `test_coderun_refusal.py` checks). Root without bwrap: they fail, because
the Makefile is expected to install it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sandbox.coderun import Limits, SandboxConfig


@pytest.fixture
def limits() -> Limits:
    """Generous wall/CPU limits so a loaded machine cannot make the happy paths time out."""
    return Limits(wall_seconds=20, cpu_seconds=10, memory_bytes=1 << 30)


@pytest.fixture
def income_table() -> pa.Table:
    return pa.table({"person_id": [f"P{i:04d}" for i in range(8)],
                     "district": ["Liangxi", "Xinwu", "Liangxi", "Binhu", "Xinwu", "Liangxi", "Binhu", "Xinwu"],
                     "monthly_income": [5000.0, 7000.0, 9000.0, 11000.0, 4000.0, 6000.0, 8000.0, 10000.0]})


@pytest.fixture
def home(tmp_path: Path, income_table: pa.Table) -> Path:
    """A VEILBOX_HOME look-alike: meta.db and two datasets side by side under data/ (owner-only modes)."""
    h = tmp_path / "home"
    (h / "data").mkdir(parents=True)
    (h / "meta.db").write_text("SECRET-META-DB-CONTENT")
    pq.write_table(income_table, h / "data" / "tax_income.parquet")
    pq.write_table(pa.table({"secret": ["OTHER-DATASET-ROW"]}), h / "data" / "other.parquet")
    for p in (h / "meta.db", h / "data" / "tax_income.parquet", h / "data" / "other.parquet"):
        p.chmod(0o600)
    (h / "data").chmod(0o700)
    return h


@pytest.fixture
def tax_income(home: Path) -> Path:
    return home / "data" / "tax_income.parquet"


@pytest.fixture
def config() -> SandboxConfig:
    """A uid of its own for this test, so it can check that nothing of its sandbox outlives the run."""
    return SandboxConfig(uid=1_400_000_000 + secrets.randbelow(1 << 20))


def _processes_of(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("Uid:") and str(uid) in line.split()[1:]:
                pids.append(int(entry))
    return pids


@pytest.fixture
def processes_of() -> Callable[[int], list[int]]:
    """Host pids whose real, effective, saved or filesystem uid is the given one."""
    return _processes_of
