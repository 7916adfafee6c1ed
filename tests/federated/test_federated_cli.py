"""`veilbox federated train` (operator) and `veilbox federated join` (holders) from the shell, over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

HOLDERS = ("bank-north", "bank-south", "bank-east")


def _env(url: str, client: Any) -> dict[str, str]:
    token = client._http.headers["Authorization"].split()[1]
    return {**os.environ, "VEILBOX_URL": url, "VEILBOX_TOKEN": token, "COLUMNS": "200"}


def test_operator_and_holders_train_from_the_shell(parties: Any, holder_tables: dict[str, pa.Table],
                                                   city_data: Any, tmp_path: Path) -> None:
    url = parties.service.url
    ag = parties.agreement()
    holders = {name: parties.service.principal(name, "bank") for name in HOLDERS}
    procs = {}
    for name in HOLDERS:
        pq.write_table(holder_tables[name], tmp_path / f"{name}.parquet")
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "veilbox.cli", "federated", "join", "--data", str(tmp_path / f"{name}.parquet"),
             "--max-epsilon", "3", "--timeout", "240"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(url, holders[name]))
    args = ["federated", "train", "--agreement", ag["id"], "--declaration", str(city_data.tax_income_spec),
            "--feature", "age", "--feature", "monthly_income", "--feature", "industry", "--label", "has_default",
            "--threshold", "2", "--rounds", "2", "--epsilon", "2", "--max-rows-per-holder", "2000",
            "--stage-timeout", "20", "--out", str(tmp_path / "card.json")]
    for name in HOLDERS:
        args += ["--holder", name]
    train = subprocess.run([sys.executable, "-m", "veilbox.cli", *args], capture_output=True, text=True,
                           timeout=300, env=_env(url, parties.operator))
    reports = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        reports[name] = json.loads(stdout)
    assert train.returncode == 0, train.stderr
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["privacy"]["rounds_released"] == 2 and card["privacy"]["epsilon"] <= 2.0 + 1e-9
    assert [sorted(r["survivors"]) for r in card["rounds"]] == [sorted(HOLDERS)] * 2
    for name, report in reports.items():
        assert [j["round"] for j in report["joined"]] == [0, 1] and report["refused"] == []
        ledger = json.loads((tmp_path / f"{name}.parquet.ledger.json").read_text())
        assert ledger["plans"][card["plan_id"]]["contributed"] == [0, 1]
