"""`veilbox keys status|rotate` on a local home, and `veilbox serve` failing closed without its master key."""

import base64
import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from catalog.keyring import default_key_file
from veilbox._cli_common import CliError
from veilbox.cli import app


def test_keys_status_rotate_and_serve_without_the_master_key(tmp_path, monkeypatch):
    for var in ("VEILBOX_MASTER_KEY", "VEILBOX_MASTER_KEY_FILE", "VEILBOX_PKCS11_MODULE"):
        monkeypatch.delenv(var, raising=False)
    home, runner = tmp_path / "home", CliRunner()

    def run(*args):
        r = runner.invoke(app, [str(a) for a in args])
        assert r.exit_code == 0, r.output
        return r.output

    run("init", "--home", home, "--json")
    old = default_key_file(home)
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

    env = {k: v for k, v in os.environ.items() if not k.startswith("VEILBOX_")}
    r = subprocess.run([sys.executable, "-m", "veilbox.cli", "serve", "--home", str(home), "--port", "0"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2 and "master_key.missing" in r.stderr and "VEILBOX_MASTER_KEY_FILE" in r.stderr, r.stderr
    monkeypatch.setenv("VEILBOX_MASTER_KEY_FILE", str(new))
    assert json.loads(run("keys", "status", "--home", home, "--json"))["provider"].startswith(f"file:{new}")
