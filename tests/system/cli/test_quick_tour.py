"""The README's quick tour, run as written: its first fenced shell block, line by line in one bash, from a directory
laid out like a fresh clone after `make venv` (the repository's `.venv` and `examples/`), with a temporary home,
config directory and port. It must reach the DP answer and a verified audit chain."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

from gateway.server import free_port
from tests.conftest import REPO


def tour_block() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Quick tour") :]
    m = re.search(r"```bash\n(.*?)```", section, re.S)
    assert m, "the quick tour has no ```bash block"
    return m.group(1)


def test_the_readme_quick_tour_reaches_a_dp_answer(tmp_path: Path) -> None:
    work, home = tmp_path / "clone", tmp_path / "user"
    work.mkdir()
    home.mkdir()
    (work / ".venv").symlink_to(REPO / ".venv")
    (work / "examples").symlink_to(REPO / "examples")
    port = free_port("127.0.0.1")
    block = tour_block()
    assert "VEILBOX_TOKEN=" not in block  # the profiles carry the tokens
    script = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + block.replace("8000", str(port))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VEILBOX_", "XDG_CONFIG_HOME"))}
    env |= {"HOME": str(home), "COLUMNS": "200", "PYTHONWARNINGS": "ignore"}
    r = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    out = r.stdout
    assert "n (95% interval)" in out and "district" in out  # the released DP table
    assert '"ok": true' in out  # the regulator's audit verification
    profile = home / ".config" / "veilbox" / "profiles" / "operator.json"
    assert stat.S_IMODE(profile.stat().st_mode) == 0o600
