"""Opening a home removes the temporary files a crashed writer left (a partial ingest copy after kill -9, half a
model) and audits the sweep once (``files.sweep``); files of live writers and registered files stay."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from gateway.context import init_home, open_context
from vocab.actions import AuditAction


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _sweeps(ctx) -> list[dict]:
    return [e for e in ctx.audit.iter_all() if e["action"] == AuditAction.FILES_SWEEP]


def test_leftover_temp_files_are_removed_at_open_and_audited(settings):
    init_home(settings)
    dead = _dead_pid()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.models_dir / "job-1").mkdir(parents=True, exist_ok=True)
    partial = settings.data_dir / f".ingest-tax.{dead}.{'0' * 16}.tmp"
    half_model = settings.models_dir / "job-1" / f".model.safetensors.{dead}.{'1' * 16}.tmp"
    live = settings.data_dir / f".ingest-other.{os.getpid()}.{'2' * 16}.tmp"  # a writer still running
    registered = settings.data_dir / "tax-0123456789abcdef.parquet"
    for p in (partial, half_model, live, registered):
        p.write_bytes(b"PAR1 partial")

    ctx = open_context(settings)
    try:
        assert not partial.exists() and not half_model.exists()
        assert live.exists() and registered.exists()
        [entry] = _sweeps(ctx)
        details = entry["details"] if isinstance(entry["details"], dict) else json.loads(entry["details"])
        assert entry["role"] == "system" and details["removed"] == 2
        assert sorted(details["files"]) == sorted([f"data/{partial.name}", f"models/job-1/{half_model.name}"])
    finally:
        ctx.close()

    again = open_context(settings)  # nothing left to sweep: no further entry
    try:
        assert len(_sweeps(again)) == 1
    finally:
        again.close()
