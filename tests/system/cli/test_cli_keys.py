"""`veilbox keys status|rotate` on a local home, and `veilbox serve` failing closed without its master key."""

import base64
import json

import pytest
import uvicorn
from typer.testing import CliRunner

from catalog.keyring import default_key_file
from veilbox._cli_common import CliError
from veilbox._cli_common import run as run_cli
from veilbox.cli import app


def test_keys_status_rotate_and_serve_without_the_master_key(tmp_path, monkeypatch, capsys):
    for var in ("VEILBOX_MASTER_KEY", "VEILBOX_MASTER_KEY_FILE", "VEILBOX_PKCS11_MODULE"):
        monkeypatch.delenv(var, raising=False)
    home, runner = tmp_path / "home", CliRunner()

    def run(*args):
        r = runner.invoke(app, [str(a) for a in args])
        assert r.exit_code == 0, r.output
        return r.output

    init = json.loads(run("init", "--home", home, "--json"))
    old = default_key_file(home)
    assert init["master_key"].startswith(f"file:{old} fp=")  # beside the home, named, never printed
    status = json.loads(run("keys", "status", "--home", home, "--json"))
    assert status["provider"].startswith(f"file:{old}") and status["wrapped_keys"] >= 3
    assert not any(form in run("keys", "status", "--home", home) for form in
                   (old.read_bytes().hex(), base64.b64encode(old.read_bytes()).decode()))  # no secret printed
    refused = runner.invoke(app, ["keys", "rotate", "--home", str(home), "--to-env", "--to-file", str(tmp_path / "k")])
    assert isinstance(refused.exception, CliError) and "exactly one" in refused.exception.cause
    new = tmp_path / "secrets" / "veilbox.key"
    rotated = json.loads(run("keys", "rotate", "--home", home, "--to-file", new, "--json"))
    assert rotated["rewrapped"] == status["wrapped_keys"] and "VEILBOX_MASTER_KEY_FILE" in rotated["next"]
    assert (new.stat().st_mode & 0o777) == 0o600
    old.unlink()

    # `veilbox serve` as its entry point runs it (veilbox.cli:main → run): one line on stderr, exit 2, never serving
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("served without its master key"))
    with pytest.raises(SystemExit) as exited:
        run_cli(app, ["serve", "--home", str(home), "--port", "0"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "master_key.missing" in err and "VEILBOX_MASTER_KEY_FILE" in err, err
    monkeypatch.setenv("VEILBOX_MASTER_KEY_FILE", str(new))
    assert json.loads(run("keys", "status", "--home", home, "--json"))["provider"].startswith(f"file:{new}")
