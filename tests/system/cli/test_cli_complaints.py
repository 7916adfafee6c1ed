"""`veilbox complaint …` against a real gateway (in process, through Typer's runner): the owner files a person's
objection by the raw id, the authority investigates and rejects it with reasons, the regulator reads it and may
not move it (exit code 1), a decision without reasons is a usage error (exit code 2)."""

import json

from typer.testing import CliRunner

from veilbox.cli import app


def test_complaint_commands(parties):
    svc = parties.service
    runner = CliRunner()
    tokens = {"authority": svc.admin.create_principal("data-bureau", "authority")["token"],
              "owner": parties.owner._http.headers["Authorization"].split()[1],
              "bank": parties.bank._http.headers["Authorization"].split()[1],
              "regulator": parties.regulator._http.headers["Authorization"].split()[1]}

    def run(who, *args, code=0):
        r = runner.invoke(app, ["--url", svc.url, "--token", tokens[who], *args, "--json"])
        assert r.exit_code == code, r.output
        return json.loads(r.output) if code == 0 else None

    c = run("owner", "complaint", "file", "the person objects", "--on", "subject", "--subject", "P0001",
            "--objection")
    assert c["kind"] == "objection" and c["suspends_subject"] and "P0001" not in json.dumps(c)
    assert [x["id"] for x in run("regulator", "complaint", "list", "--state", "open")] == [c["id"]]
    assert run("bank", "complaint", "list") == []
    run("bank", "complaint", "show", c["id"], code=1)  # not the bank's: NOT_FOUND_OR_FORBIDDEN
    run("regulator", "complaint", "investigate", c["id"], code=1)
    assert run("authority", "complaint", "investigate", c["id"])["state"] == "investigating"
    run("authority", "complaint", "reject", c["id"], code=2)  # --reason is required
    out = run("authority", "complaint", "reject", c["id"], "--reason", "a legal basis applies")
    assert out["state"] == "rejected" and not out["suspends_subject"]
    shown = run("owner", "complaint", "show", c["id"])
    assert [h["state"] for h in shown["history"]] == ["open", "investigating", "rejected"]
