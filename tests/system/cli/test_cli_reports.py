"""`veilbox report …` against a real gateway (in process, through Typer's runner): the quarterly and annual
reports (JSON and PDF), the incident list and one incident's PDF for the data authority; a bank is refused (exit
code 1); two periods at once are a usage error (exit code 2)."""

import datetime as dt
import json

from typer.testing import CliRunner

from veilbox.cli import app


def test_report_commands(parties, tmp_path):
    svc = parties.service
    runner = CliRunner()
    authority = svc.admin.create_principal("data-bureau", "authority")["token"]
    bank = parties.bank._http.headers["Authorization"].split()[1]
    aid = parties.agreement()["id"]
    svc.client(authority).authority_suspend(aid, "the consent notice is missing")

    def run(token, *args, code=0):
        r = runner.invoke(app, ["--url", svc.url, "--token", token, *args, "--json"])
        assert r.exit_code == code, r.output
        return json.loads(r.output) if code == 0 else None

    now = dt.datetime.now(dt.UTC)
    quarter = f"{now.year}-Q{(now.month - 1) // 3 + 1}"
    assert run(authority, "report", "--quarter", quarter)["period"] == quarter
    out = run(authority, "report", "--year", str(now.year), "--pdf", str(tmp_path / "y.pdf"))
    assert out == {"wrote": str(tmp_path / "y.pdf")} and (tmp_path / "y.pdf").read_bytes().startswith(b"%PDF")
    run(authority, "report", "--month", now.strftime("%Y-%m"), "--year", str(now.year), code=2)
    [inc] = run(authority, "report", "incidents", "--kind", "suspension")
    assert inc["agreement_id"] == aid and inc["reasons"] == ["the consent notice is missing"]
    assert run(authority, "report", "incident", inc["id"]) == inc
    run(authority, "report", "incident", inc["id"], "--pdf", str(tmp_path / "i.pdf"))
    assert (tmp_path / "i.pdf").read_bytes().startswith(b"%PDF")
    run(bank, "report", "incidents", code=1)
