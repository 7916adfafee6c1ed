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
    ag = parties.agreement(holders=list(HOLDERS))  # the holders are parties to the agreement
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
            "--threshold", "3", "--rounds", "2", "--epsilon", "2", "--max-rows-per-holder", "2000",
            "--stage-timeout", "300", "--out", str(tmp_path / "card.json")]
    for name in HOLDERS:
        args += ["--holder", name]
    train = subprocess.run([sys.executable, "-m", "veilbox.cli", *args], capture_output=True, text=True,
                           timeout=300, env=_env(url, parties.operator))
    reports, shown = {}, {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        reports[name], shown[name] = json.loads(stdout), stderr
    assert train.returncode == 0, train.stderr
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["privacy"]["rounds_released"] == 2 and card["privacy"]["epsilon"] <= 2.0 + 1e-9
    assert [sorted(r["survivors"]) for r in card["rounds"]] == [sorted(HOLDERS)] * 2
    digest = train.stderr.split("(", 1)[1].split(")", 1)[0]  # "plan fp-… (sha256:…): …"
    assert digest.startswith("sha256:")
    for name, report in reports.items():
        assert [j["round"] for j in report["joined"]] == [0, 1] and report["refused"] == []
        # the holder showed the plan it accepted before contributing: id, digest, holders, threshold, ε
        assert [(a["plan_id"], a["digest"], a["threshold"]) for a in report["accepted"]] == [
            (card["plan_id"], digest, 3)]
        assert report["accepted"][0]["epsilon"] <= 2.0 + 1e-9
        assert "accepting: plan any; lifetime ε cap 3.0" in shown[name]
        assert f"accepted plan {card['plan_id']} ({digest})" in shown[name]
        ledger = json.loads((tmp_path / f"{name}.parquet.ledger.json").read_text())
        assert ledger["plans"][card["plan_id"]]["contributed"] == [0, 1]


def test_a_holder_refuses_to_join_without_a_cap_or_a_pinned_plan(parties: Any, holder_tables: dict[str, pa.Table],
                                                                 tmp_path: Path) -> None:
    url = parties.service.url
    bank = parties.service.principal("bank-north", "bank")
    data = tmp_path / "mine.parquet"
    pq.write_table(holder_tables["bank-north"], data)
    base = [sys.executable, "-m", "veilbox.cli", "federated", "join", "--data", str(data), "--timeout", "1"]
    for extra in ([], ["--plan", "fp-whatever"], ["--max-delta", "1e-6"]):
        r = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=120, env=_env(url, bank))
        assert r.returncode == 2 and "refusing to join" in r.stderr and r.stdout == ""
    mine = [e for e in parties.regulator.audit(limit=1000)["entries"] if e["actor"] == "bank-north"]
    assert mine == []  # it never spoke to the gateway
    pinned = subprocess.run([*base, "--plan-digest", "sha256:" + "ab" * 32], capture_output=True, text=True,
                            timeout=120, env=_env(url, bank))
    assert pinned.returncode == 0, pinned.stderr
    assert "accepting: plan sha256:abab" in pinned.stderr
    assert json.loads(pinned.stdout)["accepted"] == []
