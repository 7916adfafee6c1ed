"""`veilbox login|logout|whoami`: a 0600 profile under $XDG_CONFIG_HOME that flags and environment override."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import pytest

from veilbox import _cli_common as base
from veilbox.cli import app
from veilbox.client import Client


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for var in ("VEILBOX_URL", "VEILBOX_TOKEN", "VEILBOX_PROFILE", "VEILBOX_DEBUG"):
        monkeypatch.delenv(var, raising=False)

    def handler(request: httpx.Request) -> httpx.Response:
        token = request.headers["Authorization"].split()[1]
        if token == "good":
            return httpx.Response(200, json={"id": "p1", "name": "city-tax", "role": "owner"})
        return httpx.Response(401, json={"error": {"code": "UNAUTHENTICATED", "message": "bad token", "details": []}})

    monkeypatch.setattr(base, "Client", lambda url, token: Client(url, token, transport=httpx.MockTransport(handler)))


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as ex:
        base.run(app, list(args))
    got = capsys.readouterr()
    return int(ex.value.code or 0), got.out, got.err


def test_login_whoami_logout(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = cli(capsys, "login", "--url", "http://gw:8000", "--token", "good", "--profile", "tax")
    assert code == 0, err
    path = tmp_path / "config" / "veilbox" / "profiles" / "tax.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text()) == {
        "url": "http://gw:8000",
        "token": "good",
        "name": "city-tax",
        "role": "owner",
    }
    monkeypatch.setenv("VEILBOX_PROFILE", "tax")
    code, out, _ = cli(capsys, "--json", "whoami")
    assert code == 0 and json.loads(out) == {
        "url": "http://gw:8000",
        "name": "city-tax",
        "role": "owner",
        "credentials": "profile tax",
    }
    # the environment still overrides the profile
    monkeypatch.setenv("VEILBOX_TOKEN", "stale")
    code, _, err = cli(capsys, "whoami")
    assert code == base.EXIT_API and "UNAUTHENTICATED" in err and "veilbox login" in err
    monkeypatch.delenv("VEILBOX_TOKEN")
    code, _, _ = cli(capsys, "logout")
    assert code == 0 and not path.exists()
    code, _, err = cli(capsys, "whoami")
    assert code == base.EXIT_USAGE and "no token" in err


def test_a_bad_token_is_not_saved_and_a_readable_profile_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = cli(capsys, "login", "--token", "bad")
    assert code == base.EXIT_API and "UNAUTHENTICATED" in err
    profiles = tmp_path / "config" / "veilbox" / "profiles"
    assert not (profiles / "default.json").exists()
    assert cli(capsys, "login", "--token", "good")[0] == 0
    (profiles / "default.json").chmod(0o644)
    code, _, err = cli(capsys, "whoami")
    assert code == base.EXIT_USAGE and "readable by other users" in err and "chmod 600" in err
