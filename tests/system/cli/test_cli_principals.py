"""`veilbox principal disable|enable|rotate|expire` against a real gateway (in process, through Typer's runner)."""

import json

from typer.testing import CliRunner

from veilbox.cli import app


def test_principal_commands(service):
    runner = CliRunner()
    admin = ["--url", service.url, "--token", service.admin.create_principal("ops", "admin")["token"]]

    def run(*args):
        r = runner.invoke(app, [*admin, "principal", *args, "--json"])
        assert r.exit_code == 0, r.output
        return json.loads(r.output)

    bank_token = service.admin.create_principal("icbc-wuxi", "bank")["token"]
    assert run("disable", "icbc-wuxi")["disabled"] is True
    assert run("enable", "icbc-wuxi")["disabled"] is False
    rotated = run("rotate", "icbc-wuxi")
    assert rotated["token"] != bank_token and service.client(rotated["token"]).me()["name"] == "icbc-wuxi"
    assert run("expire", "icbc-wuxi", "--at", "2000-01-01T00:00:00Z")["expires_at"].startswith("2000-01-01")
    listed = {p["name"]: p for p in run("list")}
    assert listed["icbc-wuxi"]["expires_at"].startswith("2000-01-01")
