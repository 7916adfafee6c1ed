"""`veilbox verify define|list|check` as a user runs them, against a real gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def veilbox(*args: str, token: str, url: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "veilbox.cli", *args], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "VEILBOX_URL": url, "VEILBOX_TOKEN": token, "COLUMNS": "250"})
    if check and r.returncode != 0:
        raise AssertionError(r.stdout + r.stderr)
    return r


def _token(client) -> str:
    return client._http.headers["authorization"].split()[1]


def test_define_list_check(world, tmp_path):
    url = world.parties.service.url
    spec = {"name": "insured_at_least", "dataset": "tax_income", "subject_column": "person_id",
            "predicate": "social_insurance_months >= :months", "params": {"months": "integer"}}
    (tmp_path / "p.json").write_text(json.dumps(spec))
    made = json.loads(veilbox("verify", "define", str(tmp_path / "p.json"), token=_token(world.owner), url=url).stdout)
    assert made["encrypted_form"]["column"] == "social_insurance_months"
    listing = json.loads(veilbox("verify", "list", "--json", token=_token(world.bank), url=url).stdout)
    assert "insured_at_least" in {p["name"] for p in listing}
    assert "insured_at_least" in veilbox("verify", "list", token=_token(world.bank), url=url).stdout
    row = next(iter(world.rows.values()))
    out = json.loads(veilbox("verify", "check", "insured_at_least", "--agreement", world.agreement["id"],
                             "--subject", row["person_id"], "--param", f"months={row['social_insurance_months']}",
                             "--consent", "consent-cli", token=_token(world.bank), url=url).stdout)
    assert out["result"] is True and out["receipt"].startswith("vbr1.")
    bad = veilbox("verify", "check", "insured_at_least", "--agreement", world.agreement["id"], "--subject", "P1",
                  "--param", "months=abc", "--consent", "c", token=_token(world.bank), url=url, check=False)
    assert bad.returncode == 1 and "INVALID_REQUEST" in bad.stderr
    again = veilbox("verify", "define", str(tmp_path / "p.json"), token=_token(world.bank), url=url, check=False)
    assert again.returncode == 1 and "POLICY_DENIED" in again.stderr
    # a product that must hide membership cannot ask "is this subject present?"
    (tmp_path / "m.json").write_text(json.dumps({**spec, "name": "insured_ever", "hide_membership": True}))
    refused = veilbox("verify", "define", str(tmp_path / "m.json"), token=_token(world.owner), url=url, check=False)
    assert refused.returncode == 1 and "QUERY_REJECTED" in refused.stderr
