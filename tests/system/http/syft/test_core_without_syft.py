"""The core install never imports syft: with every syft package blocked, the CLI, the gateway and the demo import,
the demo's first chapter runs against a real gateway, and the PySyft chapter says it is skipped. Runs whether or
not the extra is installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import sys
BLOCKED = ("syft", "syft_rds", "syft_job", "syft_datasets", "syft_perms", "syft_permissions")
for name in BLOCKED:
    sys.modules[name] = None  # any import of them now raises ImportError

from pathlib import Path
import veilbox, veilbox.cli, veilbox.demo, gateway.app  # noqa: E401
from gateway.context import init_home, open_context
from gateway.server import BackgroundServer
from gateway.settings import Settings
from veilbox.client import Client
from veilbox.demo import Story, chapter_setup
from veilbox.demo_syft import chapter_syft, syft_available

home = Path(sys.argv[1])
settings = Settings(home=home / "service", import_roots=[home / "incoming"])
token = init_home(settings)
ctx = open_context(settings)
with BackgroundServer(ctx) as server:
    story = Story(Client(server.url, token))
    chapter_setup(story)
    chapter_syft(story)
ctx.close()
assert not syft_available()
assert len(story.clients) == 4, story.clients
loaded = [m for m in sys.modules if m.split(".")[0] in BLOCKED and sys.modules[m] is not None]
assert not loaded, loaded
print("CORE-OK")
"""


def test_the_core_and_the_demos_first_chapter_run_with_syft_blocked(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[4]
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "CORE-OK" in proc.stdout
    assert "PySyft chapter skipped" in proc.stdout
