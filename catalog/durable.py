"""Durable files: written under a temporary name, fsynced, renamed into place, directory fsynced.

Every file the service keeps under its home that a metadata row points to (registered Parquet copies, model
weights and cards, PSI setups) goes through this module, *before* the row that names it commits:

1. the bytes go to a temporary file in the same directory (`temp_path`: ``.<name>.<pid>.<random>.tmp``),
2. the file is flushed and fsynced,
3. it is renamed over its final name (atomic on POSIX: readers see the old file or the new one, never half),
4. the directory is fsynced so the rename itself survives a power cut.

A crash before step 3 leaves only a temporary file, never a partial file under the final name; `sweep_temp`
removes such leftovers when the service opens its home (`gateway.context.open_context`, audited as
``files.sweep``). A temporary file whose writer process is still alive on this host is kept (several gateway
processes may share one home); one whose writer is gone, or whose name carries no process id (older homes:
``.ingest-<name>-<random>.parquet``), is removed. Known limit: several hosts sharing one home over a network
file system cannot tell each other's live writers apart; each host's start-up sweep only trusts its own pids.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "commit_temp",
    "fsync_dir",
    "fsync_file",
    "is_temp_name",
    "sweep_temp",
    "temp_path",
]

TEMP_SUFFIX = ".tmp"
# .<stem>.<pid>.<16 hex>.tmp — the form `temp_path` writes
_TEMP_RE = re.compile(r"^\..+\.(?P<pid>\d+)\.[0-9a-f]{16}\.tmp$")
# the ingest copies older homes wrote (no pid in the name)
_LEGACY_INGEST_RE = re.compile(r"^\.ingest-.+-[0-9a-f]{16}\.parquet$")


def temp_path(final: Path, stem: str | None = None) -> Path:
    """A fresh temporary name next to ``final`` (same directory, so the rename stays on one file system)."""
    return final.parent / f".{stem or final.name}.{os.getpid()}.{os.urandom(8).hex()}{TEMP_SUFFIX}"


def fsync_file(path: Path) -> None:
    """Flush ``path``'s data and metadata to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink inside ``directory`` durable (fsync of the directory itself)."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_temp(tmp: Path, final: Path) -> None:
    """fsync ``tmp``, rename it over ``final``, fsync the directory."""
    fsync_file(tmp)
    os.replace(tmp, final)
    fsync_dir(final.parent)


@contextmanager
def atomic_path(final: Path, stem: str | None = None) -> Iterator[Path]:
    """Yield a temporary path for a writer that needs a path (pyarrow, safetensors, numpy); when the block ends
    without an exception the file is fsynced and renamed to ``final`` and the directory fsynced. On an exception
    the temporary file is removed and nothing appears under ``final``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(final, stem)
    try:
        yield tmp
        commit_temp(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(final: Path, data: bytes) -> None:
    """Write ``data`` to ``final`` durably and atomically (see the module docstring)."""
    with atomic_path(final) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):  # no such process (or no possible one)
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a temporary file this module (or an older ingest) writes."""
    return bool(_TEMP_RE.match(name) or _LEGACY_INGEST_RE.match(name))


def sweep_temp(*roots: Path) -> list[Path]:
    """Remove the temporary files crashed writers left under ``roots`` (recursively); return what was removed.

    Kept: files of a writer process still alive on this host. Directories holding removed files are fsynced."""
    removed: list[Path] = []
    for root in roots:
        if not root.is_dir() or root.is_symlink():
            continue
        # os.walk: symlinked directories are not followed; an unreadable directory (a sandbox's private scratch)
        # is skipped rather than stopping the service from opening its home
        candidates = [Path(d) / n for d, _dirs, files in os.walk(root) for n in files if n.startswith(".")]
        for path in sorted(candidates):
            m = _TEMP_RE.match(path.name)
            if m is None and not _LEGACY_INGEST_RE.match(path.name):
                continue
            if path.is_symlink() or not path.is_file():
                continue
            if m is not None and _pid_alive(int(m.group("pid"))):
                continue
            try:
                path.unlink()
            except OSError:  # gone meanwhile, or not ours to remove
                continue
            removed.append(path)
    for directory in {p.parent for p in removed}:
        try:
            fsync_dir(directory)
        except OSError:  # best effort: a removal that does not survive a power cut is swept again next time
            pass
    return removed
