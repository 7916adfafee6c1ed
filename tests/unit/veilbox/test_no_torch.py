"""The client SDKs import without torch: a bank or a federated holder installs no training stack.

Each check runs in a fresh interpreter whose import system refuses ``torch`` and ``opacus`` (a meta-path hook
raising ``ImportError``), so a module that pulls either at import time, directly or through a package
``__init__``, fails here.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

BLOCKER = textwrap.dedent(
    """
    import importlib
    import importlib.abc
    import sys

    BLOCKED = ("torch", "opacus")


    class NoTraining(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked: the client SDK must not need it")
            return None


    sys.meta_path.insert(0, NoTraining())
    for module in sys.argv[1:]:
        importlib.import_module(module)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    print("imported", *sys.argv[1:])
    """
)

CLIENT_MODULES = [
    "veilbox.client",
    "veilbox.bank",
    "veilbox.cli",
    "veilbox.federated",
    "veilbox.secagg_client",
    "sandbox.federated",
    "sandbox.dp",
]


def run_blocked(*modules: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCKER, *modules], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, check=False)


@pytest.mark.parametrize("module", CLIENT_MODULES)
def test_client_module_imports_without_torch(module: str) -> None:
    r = run_blocked(module)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == f"imported {module}"


def test_the_blocker_does_block() -> None:
    """The hook is effective: the training runner, which needs torch, fails to import under it."""
    r = run_blocked("sandbox.train.runner")
    assert r.returncode != 0 and "torch is blocked" in r.stderr
