"""Where a custom-code run's real input lies while it runs: a private directory on a tmpfs, never the home's disk.

The granted columns of a ``code`` job are a plaintext projection of a (possibly sealed) dataset. They are written
only into a 0700 directory the worker owns on a memory-backed filesystem (``tmpfs``/``ramfs``, default
``/dev/shm``, `SandboxConfig.tmpfs_dir` to choose another), together with the runner's own staging copy, and the
directory is removed after the run. `private_dir` refuses (`TmpfsUnavailable`) when the directory is not on such a
filesystem: the run does not fall back to a disk. Directories left by a worker that died mid-run carry its pid in
their name; `sweep_stale` removes those whose process is gone (called before every staging, so a restarted worker
clears them before its first run).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

DEFAULT_ROOT = "/dev/shm"  # noqa: S108 - a 0700 mkdtemp directory inside it, never a fixed name
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
PREFIX = "veilbox-code-"
_NAME_RE = re.compile(rf"^{re.escape(PREFIX)}(?P<pid>\d+)-")


class TmpfsUnavailable(Exception):
    """No memory-backed filesystem to stage plaintext input on: the run must not start."""


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def filesystem_of(path: str | Path, mounts: str = "/proc/self/mounts") -> str | None:
    """The filesystem type of the mount holding ``path`` (the longest mount point prefix), or None if unknown."""
    target = os.path.realpath(path)
    best, fstype = "", None
    try:
        with open(mounts, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = _unescape(parts[1])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):  # later lines of the same point shadow earlier ones
            best, fstype = point, parts[2]
    return fstype


def check_root(root: str | Path | None) -> Path:
    """``root`` (default ``/dev/shm``) if it is a directory on a memory-backed filesystem; else `TmpfsUnavailable`."""
    path = Path(root or DEFAULT_ROOT)
    if not path.is_dir():
        raise TmpfsUnavailable(f"{path} does not exist")
    fstype = filesystem_of(path)
    if fstype not in MEMORY_FILESYSTEMS:
        raise TmpfsUnavailable(f"{path} is not on a tmpfs (filesystem: {fstype or 'unknown'})")
    return path


def private_dir(root: str | Path | None, label: str) -> Path:
    """A new 0700 directory under the memory-backed ``root``, named with this process's pid (see `sweep_stale`)."""
    base = check_root(root)
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", label)[:64]
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-{safe}-", dir=base))
    path.chmod(0o700)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(root: str | Path | None) -> list[Path]:
    """Remove staging directories under ``root`` whose worker process is gone; return them."""
    base = Path(root or DEFAULT_ROOT)
    removed: list[Path] = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _NAME_RE.match(entry.name)
        if m is None or entry.is_symlink() or not entry.is_dir():
            continue
        pid = int(m.group("pid"))
        if pid == os.getpid() or _alive(pid):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed
