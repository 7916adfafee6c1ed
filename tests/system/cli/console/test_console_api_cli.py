"""The regulator's lineage and monthly report over the JSON API and the CLI (the console's pages use the same
functions)."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from veilbox.client import ApiError


def _released(console: Any) -> dict[str, Any]:
    job = console.parties.owner.job(console.job_id)
    console.parties.owner.approve_job(console.job_id, job["spec_hash"])
    done = console.parties.operator.wait_job(console.job_id)
    assert done["state"] == "released", done
    return done


def test_lineage_and_report_over_the_api(console: Any) -> None:
    done = _released(console)
    reg = console.parties.regulator
    tr = reg.lineage(done["output_digest"])
    assert tr["job"]["id"] == console.job_id and tr["agreement"]["id"] == console.agreement["id"]
    assert tr["datasets"][0]["unchanged"] and tr["produced_by"] == "job.query"
    assert {e["action"] for e in tr["entries"]} >= {"job.release", "job.approve"}
    assert reg.lineage(console.job_id)["output_digest"] == done["output_digest"]
    for who in ("owner", "operator", "bank"):
        with pytest.raises(ApiError) as e:
            getattr(console.parties, who).lineage(done["output_digest"])
        assert e.value.code == "POLICY_DENIED"
    with pytest.raises(ApiError) as e:
        reg.lineage("sha256:" + "1" * 64)
    assert e.value.code == "NOT_FOUND_OR_FORBIDDEN"
    month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    rep = reg.audit_report(month)
    row = next(a for a in rep["agreements"] if a["name"] == console.agreement["id"])
    assert row["epsilon_exact"] == "1/2" and row["outputs"] >= 1 and rep["chain"]["ok"]
    assert any(p["name"] == "private SQL" for p in rep["products"])
    assert any(d["name"] == "tax_income" for d in rep["datasets"])
    assert reg.audit_report(month, "pdf").startswith(b"%PDF")
    table = pq.read_table(io.BytesIO(reg.audit_report(month, "parquet")))
    assert table.num_rows == rep["entries"] or table.num_rows >= rep["entries"]
    for bad in ("2026-13", "november"):
        with pytest.raises(ApiError) as e:
            reg.audit_report(bad)
        assert e.value.code == "INVALID_REQUEST"


def test_lineage_and_report_from_the_shell(console: Any, tmp_path: Path) -> None:
    done = _released(console)
    env = {**os.environ, "VEILBOX_URL": console.url, "VEILBOX_TOKEN": console.token_of(console.parties.regulator),
           "COLUMNS": "200"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([sys.executable, "-m", "veilbox.cli", *args], capture_output=True, text=True,
                           timeout=300, env=env)
        assert r.returncode == 0, r.stderr
        return r

    tr = json.loads(cli("audit", "lineage", done["output_digest"], "--json").stdout)
    assert tr["job"]["id"] == console.job_id
    assert console.agreement["id"] in cli("audit", "lineage", done["output_digest"]).stdout
    month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    assert json.loads(cli("audit", "report", "--month", month).stdout)["month"] == month
    cli("audit", "report", "--month", month, "--format", "pdf", "--out", str(tmp_path / "r.pdf"))
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")
