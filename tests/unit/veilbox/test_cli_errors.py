"""CLI failures are one line, ``error: <cause> — <what to do>``, with a stable exit code; --debug adds the traceback.

In process (`veilbox._cli_common.run`), the gateway played by an httpx mock transport: no server is started."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from veilbox import _cli_common as base
from veilbox.cli import app
from veilbox.client import Client

AGREEMENTS = ["agr_ab" + "0" * 18, "agr_ac" + "0" * 18]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for var in ("VEILBOX_URL", "VEILBOX_TOKEN", "VEILBOX_PROFILE", "VEILBOX_DEBUG"):
        monkeypatch.delenv(var, raising=False)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as ex:
        base.run(app, list(args))
    got = capsys.readouterr()
    return int(ex.value.code or 0), got.out, got.err


def gateway(monkeypatch: pytest.MonkeyPatch, handler: Callable[[httpx.Request], httpx.Response]) -> None:
    monkeypatch.setattr(base, "Client", lambda url, token: Client(url, token, transport=httpx.MockTransport(handler)))


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and " — " in lines[0], err
    assert "Traceback" not in err
    return lines[0]


def test_missing_and_invalid_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = cli(capsys, "--token", "t", "dataset", "register", str(tmp_path / "nope.json"))
    assert code == base.EXIT_USAGE and "nope.json does not exist — check the path" in one_line(err)
    (tmp_path / "bad.json").write_text("{")
    code, _, err = cli(capsys, "--token", "t", "agreement", "propose", str(tmp_path / "bad.json"))
    assert code == base.EXIT_USAGE and "bad.json is not valid JSON" in one_line(err)


def test_unreachable_gateway_and_no_token(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "--url", "http://127.0.0.1:9", "--token", "t", "principal", "me")
    assert code == base.EXIT_UNREACHABLE
    assert "cannot reach the gateway at http://127.0.0.1:9" in one_line(err) and "veilbox serve" in err
    code, _, err = cli(capsys, "principal", "me")
    assert code == base.EXIT_USAGE and "no token — run `veilbox login`" in one_line(err)


def test_http_errors_carry_the_stable_code_and_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    body = {"error": {"code": "POLICY_DENIED", "message": "owners only", "details": []}}
    gateway(monkeypatch, lambda _: httpx.Response(403, json=body))
    code, _, err = cli(capsys, "--token", "t", "principal", "add", "x", "--role", "owner")
    line = one_line(err)
    assert code == base.EXIT_API and line.startswith("error: POLICY_DENIED (403): owners only — ")


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "job", "submit", "agr_" + "0" * 20, "--kind", "bogus", "--spec", "x.json")
    assert code == base.EXIT_USAGE and "see `veilbox job submit --help`" in one_line(err)


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = cli(capsys, "--debug", "--token", "t", "dataset", "register", str(tmp_path / "nope.json"))
    assert code == base.EXIT_USAGE and "Traceback" in err and err.strip().endswith("check the path")


def test_id_prefixes(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/agreements":
            return httpx.Response(200, json=[{"id": a} for a in AGREEMENTS])
        return httpx.Response(200, json={"id": request.url.path.rsplit("/", 1)[1], "state": "active"})

    gateway(monkeypatch, handler)
    code, out, _ = cli(capsys, "--token", "t", "--json", "agreement", "show", "ab")
    assert code == 0 and json.loads(out)["id"] == AGREEMENTS[0]
    code, _, err = cli(capsys, "--token", "t", "agreement", "show", "agr_a")
    line = one_line(err)
    assert code == base.EXIT_USAGE and AGREEMENTS[0] in line and AGREEMENTS[1] in line
    code, _, err = cli(capsys, "--token", "t", "agreement", "show", "zz")
    assert code == base.EXIT_USAGE and "no agreement id starts with 'zz'" in one_line(err)
