"""The CLI against a real gateway, and the local bootstrap commands, as a user runs them."""

import json
import os
import subprocess
import sys

import pytest

from gateway.context import open_context
from gateway.server import BackgroundServer
from gateway.settings import Settings


def veilbox(*args, env=None, check=True):
    r = subprocess.run([sys.executable, "-m", "veilbox.cli", *args], capture_output=True, text=True, timeout=300,
                       env={**os.environ, **(env or {})})
    if check and r.returncode != 0:
        raise AssertionError(r.stdout + r.stderr)
    return r


def test_init_serve_and_every_role_command(tmp_path, city_data):
    home = tmp_path / "home"
    out = json.loads(veilbox("init", "--home", str(home), "--json").stdout)
    assert out["home"] == str(home.resolve()) and out["admin_token"].startswith("vbx_")
    assert veilbox("init", "--home", str(home), check=False).returncode == 1  # never re-initialised
    settings = Settings(home=home, import_roots=[city_data.tax_income.parent.parent], latency_bucket_ms=0)
    ctx = open_context(settings)
    with BackgroundServer(ctx) as srv:
        admin = {"VEILBOX_URL": srv.url, "VEILBOX_TOKEN": out["admin_token"]}
        owner_tok = json.loads(veilbox("principal", "add", "city-tax-bureau", "--role", "owner", "--json",
                                       env=admin).stdout)["token"]
        reg_tok = json.loads(veilbox("principal", "add", "reg", "--role", "regulator", "--json",
                                     env=admin).stdout)["token"]
        owner = {"VEILBOX_URL": srv.url, "VEILBOX_TOKEN": owner_tok}
        ds = json.loads(veilbox("dataset", "register", str(city_data.tax_income_spec), "--json", env=owner).stdout)
        assert ds["name"] == "tax_income"
        assert "tax_income" in veilbox("dataset", "list", env=owner).stdout
        mock = json.loads(veilbox("dataset", "mock", "tax_income", "--rows", "3", "--json", env=owner).stdout)
        assert len(mock["rows"]) == 3
        bad = veilbox("principal", "add", "x", "--role", "owner", env=owner, check=False)
        assert bad.returncode == 1 and "POLICY_DENIED" in bad.stderr
        regulator = {"VEILBOX_URL": srv.url, "VEILBOX_TOKEN": reg_tok}
        assert json.loads(veilbox("audit", "verify", env=regulator).stdout)["ok"] is True
        page = json.loads(veilbox("audit", "list", "--json", env=regulator).stdout)
        actions = {e["action"] for e in page["entries"]}
        assert "principal.create" in actions
        veilbox("audit", "export", "--out", str(tmp_path / "a.parquet"), env=regulator)
        assert (tmp_path / "a.parquet").stat().st_size > 0
    ctx.close()
    assert json.loads(veilbox("audit", "verify", "--home", str(home)).stdout)["ok"] is True
    import sqlite3

    con = sqlite3.connect(home / "meta.db")
    con.execute("UPDATE audit_entries SET action='x' WHERE seq=4")
    con.commit()
    con.close()
    r = veilbox("audit", "verify", "--home", str(home), check=False)
    assert r.returncode == 1 and json.loads(r.stdout)["first_bad_seq"] == 4


def test_datagen_and_help(tmp_path):
    r = veilbox("datagen", "--rows", "1000", "--out", str(tmp_path / "d"))
    assert json.loads(r.stdout)["rows"] == 1000
    for cmd in ([], ["dataset"], ["audit"], ["principal"]):
        assert "Usage" in veilbox(*cmd, "--help").stdout


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    r = veilbox("demo", "--home", str(tmp_path / "demo"), "--rows", "3000")
    assert "audit chain ok=True" in r.stdout
    assert "ERROR" not in r.stdout + r.stderr
    said = " ".join(r.stdout.replace("│", " ").split())  # the facts panel, unwrapped
    for fact in ("CONSENT_INVALID (consent.subject)", "CONSENT_INVALID (consent.revoked)",  # consent registry
                 "split 3/4 : 1/4 to the cent",  # the two-owner statement
                 "filed it as BA-", "order cited", "certificate is now valid=False"):  # the authority's chapter
        assert fact in said, fact
