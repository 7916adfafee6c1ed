"""`veilbox psi size|members` and `veilbox verify check-anonymous` as a bank runs them, against a real gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def veilbox(*args: str, token: str, url: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "veilbox.cli", *args], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "VEILBOX_URL": url, "VEILBOX_TOKEN": token, "COLUMNS": "250"})
    if check and r.returncode != 0:
        raise AssertionError(r.stdout + r.stderr)
    return r


def test_psi_and_anonymous_cli(psi_world, tmp_path):
    w = psi_world
    url = w.parties.service.url
    token = w.bank._http.headers["authorization"].split()[1]
    ag = w.agreement["id"]
    known = sorted(w.rows)[:12]
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join([*known, "X0000001", "X0000002"]) + "\n")
    out = json.loads(veilbox("psi", "size", "--agreement", ag, "--dataset", "tax_income", "--ids", str(ids),
                             "--epsilon", "2", "--json", token=token, url=url).stdout)
    assert out["bank_ids"] == 14 and out["receipt"].startswith("vbr1.") and isinstance(out["size"], int)
    out = json.loads(veilbox("psi", "members", "--agreement", ag, "--dataset", "tax_income", "--ids", str(ids),
                             "--consent", "consent-cli", "--json", token=token, url=url).stdout)
    assert sorted(out["present"]) == known and out["count"] == 12
    row = w.rows[known[0]]
    out = json.loads(veilbox("verify", "check-anonymous", "income_at_least", "--agreement", ag, "--subject",
                             known[0], "--param", f"threshold={row['monthly_income']}", "--consent", "c1", "--json",
                             token=token, url=url).stdout)
    assert out["result"] is True and out["present"] is True and out["bucket_size"] >= 64
    bad = veilbox("psi", "size", "--agreement", ag, "--dataset", "tax_income", "--ids", str(ids), "--epsilon",
                  "abc", token=token, url=url, check=False)
    assert bad.returncode == 1 and "INVALID_REQUEST" in bad.stderr
    assert "size" in veilbox("psi", "size", "--agreement", ag, "--dataset", "tax_income", "--ids", str(ids),
                             "--epsilon", "1", token=token, url=url).stdout
