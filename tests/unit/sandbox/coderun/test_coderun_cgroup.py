"""The per-run cgroup: one memory cap for the whole run (rlimits are per process), removed afterwards."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import sandbox.coderun.runner as runner_module
from catalog.errors import INTERNAL, DomainError
from sandbox.coderun import CodeResult, Limits, SandboxConfig, run_code
from sandbox.coderun._cgroup import create_run_cgroup

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the code sandbox must start as root")


@pytest.fixture
def cgroups_here() -> None:
    probe = create_run_cgroup("veilbox-probe-" + os.urandom(4).hex(), 1 << 30, 64)
    if probe is None:
        pytest.skip("no usable cgroup layout on this host")
    probe.remove()


def test_memory_cap_covers_all_processes_of_the_run(cgroups_here, config):
    # Three children each touch 600 MiB: each is within its 1 GiB RLIMIT_AS, together they exceed the run's cap.
    src = """
import os
def main(inputs):
    kids = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            b = bytearray(600 << 20)
            for i in range(0, len(b), 4096):
                b[i] = 1
            os._exit(0)
        kids.append(pid)
    return [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in kids]
"""
    cfg = SandboxConfig(uid=config.uid, cgroup="required")
    outcome = run_code(src, "main", {}, "json", 256, Limits(memory_bytes=1 << 30, wall_seconds=60), config=cfg)
    if isinstance(outcome, CodeResult):
        assert -9 in outcome.value()  # the kernel's OOM killer, confined to the run's cgroup
    else:
        assert outcome.reason in ("memory_limit", "killed")


def test_run_cgroup_is_removed(cgroups_here, config):
    outcome = run_code("def main(inputs):\n    return 1\n", "main", {}, "json", 8, Limits(),
                       config=SandboxConfig(uid=config.uid, cgroup="required"))
    assert isinstance(outcome, CodeResult)
    leftovers = [p for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids")
                 if Path(root).is_dir() for p in Path(root).rglob(f"veilbox-{outcome.run_id}")]
    assert leftovers == []


def test_required_cgroup_refuses_when_unavailable(monkeypatch):
    monkeypatch.setattr(runner_module, "create_run_cgroup", lambda *a, **k: None)
    with pytest.raises(DomainError) as e:
        run_code("def main(inputs):\n    return 1\n", "main", {}, "json", 8, config=SandboxConfig(cgroup="required"))
    assert e.value.code == INTERNAL
    outcome = run_code("def main(inputs):\n    return 1\n", "main", {}, "json", 8, config=SandboxConfig(cgroup="auto"))
    assert isinstance(outcome, CodeResult)  # auto: rlimits alone still hold
