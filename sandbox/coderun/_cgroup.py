"""A per-run cgroup: one memory cap and one process cap for the *whole* sandbox, on top of the per-process
rlimits. Without it the run's worst-case memory is ``max_processes x memory_bytes``; with it, the run's total
(resident memory, page cache, and its tmpfs pages) is capped at ``memory_bytes + tmp_bytes`` and an
out-of-memory kill stays inside the run.

Supported layouts: cgroup v2 with a delegated parent whose ``cgroup.subtree_control`` already enables
``memory`` and ``pids`` (``SandboxConfig.cgroup_parent``, or the runner's own cgroup); cgroup v1 with the
``memory`` and ``pids`` hierarchies mounted and writable (run cgroups are made under the runner's own).
The sandbox's PID 1 is moved in while bwrap holds it blocked (``--block-fd``), before anything of the run
is forked, so every process of the run is inside. Creation is best-effort under ``cgroup="auto"``: if no
layout is usable the run relies on rlimits alone (logged once); ``cgroup="required"`` refuses instead.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunCgroup", "create_run_cgroup"]

_log = logging.getLogger(__name__)


def _mounts() -> tuple[str | None, dict[str, tuple[str, str]]]:
    """(cgroup2 mount point, {v1 controller: (mount point, mount root)})."""
    v2: str | None = None
    v1: dict[str, tuple[str, str]] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        root, point, fstype, options = fields[3], fields[4], tail[0], tail[2].split(",")
        if fstype == "cgroup2" and v2 is None:
            v2 = point
        elif fstype == "cgroup":
            for controller in ("memory", "pids"):
                if controller in options:
                    v1[controller] = (point, root)
    return v2, v1


def _own_paths() -> dict[str, str]:
    """{controller or "" for v2: this process's cgroup path}."""
    paths = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            paths[c] = path
    return paths


def _join(point: str, root: str, path: str) -> Path:
    rel = os.path.relpath(path, root) if path.startswith(root) else path.lstrip("/")
    return Path(point) / ("" if rel == "." else rel)


@dataclass
class RunCgroup:
    version: int
    dirs: list[Path]

    def attach(self, pid: int) -> None:
        for d in self.dirs:
            (d / "cgroup.procs").write_text(str(pid))

    def oom_killed(self) -> bool:
        memory = self.dirs[0]
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        with contextlib.suppress(OSError, ValueError):
            for line in (memory / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        return False

    def remove(self) -> None:
        for d in self.dirs:
            for _ in range(50):  # the last tasks may still be exiting
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY:
                        _log.warning("could not remove run cgroup %s: %s", d, e)
                        break
                    time.sleep(0.02)


def _make(d: Path, settings: list[tuple[str, str]]) -> None:
    d.mkdir(mode=0o755)
    try:
        for name, value in settings:
            f = d / name
            if f.exists():
                f.write_text(value)
    except OSError:
        d.rmdir()
        raise


def create_run_cgroup(name: str, memory_bytes: int, max_pids: int, parent: str | None = None) -> RunCgroup | None:
    """Make the run's cgroup (or return None when no usable layout exists)."""
    try:
        v2, v1 = _mounts()
        own = _own_paths()
        if parent is not None or (v2 is not None and "" in own and "memory" not in v1):
            base = Path(parent) if parent else _join(v2 or "", "/", own[""])
            enabled = (base / "cgroup.subtree_control").read_text().split()
            if "memory" in enabled and "pids" in enabled:
                d = base / name
                _make(d, [("memory.max", str(memory_bytes)), ("memory.swap.max", "0"),
                          ("memory.oom.group", "1"), ("pids.max", str(max_pids))])
                return RunCgroup(2, [d])
            return None
        if "memory" in v1 and "pids" in v1 and "memory" in own and "pids" in own:
            mem = _join(*v1["memory"], own["memory"]) / name
            pids = _join(*v1["pids"], own["pids"]) / name
            _make(mem, [("memory.limit_in_bytes", str(memory_bytes)),
                        ("memory.memsw.limit_in_bytes", str(memory_bytes))])
            try:
                _make(pids, [("pids.max", str(max_pids))])
            except OSError:
                RunCgroup(1, [mem]).remove()
                raise
            return RunCgroup(1, [mem, pids])
    except OSError as e:
        _log.info("no per-run cgroup (%s); relying on rlimits", e)
    return None
