"""The agreement, query and job commands against a real gateway, as each role runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def _token(c) -> str:
    return c._http.headers["Authorization"].split()[1]


def veilbox(url, client, *args, check=True):
    env = {**os.environ, "VEILBOX_URL": url, "VEILBOX_TOKEN": _token(client), "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "veilbox.cli", *args], capture_output=True, text=True, timeout=300,
                       env=env)
    if check and r.returncode != 0:
        raise AssertionError(r.stdout + r.stderr)
    return r


def test_owner_operator_and_regulator_from_the_shell(parties, tmp_path):
    url = parties.service.url
    doc = {"title": "district statistics", "grantee": "risk-lab", "datasets": ["tax_income"],
           "columns": {"tax_income": ["district", "monthly_income"]}, "purposes": ["statistics"],
           "job_kinds": ["query"], "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2030-01-01T00:00:00Z",
           "budget": {"epsilon": 2}, "min_group_units": 10, "approval": "owner_each_job"}
    (tmp_path / "agreement.json").write_text(json.dumps(doc))
    ag = json.loads(veilbox(url, parties.owner, "agreement", "propose", str(tmp_path / "agreement.json"),
                            "--json").stdout)
    assert ag["state"] == "proposed"
    assert "active" in veilbox(url, parties.operator, "agreement", "accept", ag["id"]).stdout
    pv = json.loads(veilbox(url, parties.operator, "query", "preview", ag["id"],
                            "SELECT district, AVG(monthly_income) AS avg_income FROM tax_income GROUP BY district",
                            "--epsilon", "0.5", "--json").stdout)
    assert pv["cost"]["epsilon"] == 0.5
    pending = json.loads(veilbox(url, parties.operator, "query", "run", ag["id"],
                                 "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district",
                                 "--epsilon", "0.5", "--json").stdout)
    assert pending["state"] == "pending_approval"
    queue = json.loads(veilbox(url, parties.owner, "job", "list", "--state", "pending_approval", "--json").stdout)
    assert [j["id"] for j in queue] == [pending["job_id"]]
    review = json.loads(veilbox(url, parties.owner, "job", "review", pending["job_id"], "--json").stdout)
    veilbox(url, parties.owner, "job", "approve", pending["job_id"], "--spec-hash", review["job"]["spec_hash"])
    res = json.loads(veilbox(url, parties.operator, "job", "result", pending["job_id"], "--wait", "60",
                             "--json").stdout)
    assert res["result"]["columns"] == ["district", "n"]
    table = veilbox(url, parties.operator, "job", "result", pending["job_id"][:10]).stdout  # a unique id prefix
    assert "n (95% interval)" in table and res["result"]["rows"][0][0] in table
    assert "source: tax_income, supplied by city-tax-bureau" in table  # every released table names its sources
    cert_id = res["result"]["certificate_id"]
    cert = json.loads(veilbox(url, parties.regulator, "certificate", "show", cert_id, "--json").stdout)
    assert cert["status"] == "valid" and cert["covers"]["job_id"] == pending["job_id"]
    assert cert_id in veilbox(url, parties.owner, "certificate", "list", "--agreement", ag["id"]).stdout
    budget = veilbox(url, parties.operator, "agreement", "budget", ag["id"]).stdout
    assert "1.5" in budget
    usage = json.loads(veilbox(url, parties.regulator, "agreement", "usage", ag["id"], "--json").stdout)
    assert usage["totals"]["jobs"] == 1
    denied = veilbox(url, parties.operator, "agreement", "revoke", ag["id"], check=False)
    assert denied.returncode == 1 and "POLICY_DENIED" in denied.stderr
    assert "revoked" in veilbox(url, parties.owner, "agreement", "revoke", ag["id"]).stdout
