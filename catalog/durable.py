"""Durable files: written under a temporary name, fsynced, renamed into place, directory fsynced.

Every file the service keeps under its storage root that a metadata row points to (registered Parquet copies,
model weights and cards) is written through `catalog.storage.Storage`, whose `catalog.storage.LocalStorage` uses
this module; PSI setups in the home's ``work/`` use it directly. Either way the file is in place *before* the row
that names it commits:

1. the bytes go to a temporary file in the same directory (`temp_path`:
   ``.<name>.<pid>@<host id>.<random>.tmp``),
2. the file is flushed and fsynced,
3. it is renamed over its final name (atomic on POSIX: readers see the old file or the new one, never half),
4. the directory is fsynced so the rename itself survives a power cut.

A crash before step 3 leaves only a temporary file, never a partial file under the final name; `sweep_temp`
removes such leftovers when the service opens its home (`gateway.context.open_context`, audited as
``files.sweep``). The storage root may be shared by several hosts (a network file system mounted on each), so a
temporary name carries its writer's host id (`host_id`: ``VEILBOX_HOST_ID``, else the host name) beside its process
id, and a sweep judges only its own host's writers by process id: one whose process is gone is removed, one still
alive is kept. Another host's temporary file is kept until it is older than `STALE_AFTER_S` (a day: far longer
than any write takes), then removed whoever wrote it. A name without a host id (written before hosts were named:
``.<name>.<pid>.<random>.tmp``, or an older ingest copy ``.ingest-<name>-<random>.parquet``) is judged as this
host's, as before.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "commit_temp",
    "fsync_dir",
    "fsync_file",
    "host_id",
    "is_temp_name",
    "sweep_temp",
    "temp_path",
]

TEMP_SUFFIX = ".tmp"
#: A temporary file older than this (by modification time) is removed by any host's sweep, whoever wrote it.
STALE_AFTER_S = 24 * 3600.0
# .<stem>.<pid>@<host id>.<16 hex>.tmp — the form `temp_path` writes
_TEMP_RE = re.compile(r"^\..+\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]{1,63})\.[0-9a-f]{16}\.tmp$")
# .<stem>.<pid>.<16 hex>.tmp — the form written before hosts were named (judged as this host's)
_UNHOSTED_TEMP_RE = re.compile(r"^\..+\.(?P<pid>\d+)\.[0-9a-f]{16}\.tmp$")
# the ingest copies older homes wrote (no pid in the name)
_LEGACY_INGEST_RE = re.compile(r"^\.ingest-.+-[0-9a-f]{16}\.parquet$")


def host_id() -> str:
    """This host's id in temporary names: ``VEILBOX_HOST_ID``, else the host name, cut to 63 characters of
    ``[A-Za-z0-9-]`` (others become ``-``). Hosts sharing a storage root must have distinct ids; a container's
    host name (its id) is."""
    raw = os.environ.get("VEILBOX_HOST_ID") or socket.gethostname() or "host"
    return re.sub(r"[^A-Za-z0-9-]", "-", raw)[:63] or "host"


def temp_path(final: Path, stem: str | None = None) -> Path:
    """A fresh temporary name next to ``final`` (same directory, so the rename stays on one file system), naming
    this process and host (see the module docstring)."""
    return final.parent / f".{stem or final.name}.{os.getpid()}@{host_id()}.{os.urandom(8).hex()}{TEMP_SUFFIX}"


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
    return bool(_TEMP_RE.match(name) or _UNHOSTED_TEMP_RE.match(name) or _LEGACY_INGEST_RE.match(name))


def _removable(path: Path, me: str, now: float, stale_after_s: float) -> bool:
    """Whether the sweep may remove the temporary file ``path`` (see the module docstring)."""
    try:
        if now - path.stat().st_mtime > stale_after_s:
            return True
    except OSError:
        return False
    m = _TEMP_RE.match(path.name)
    if m is not None:
        return m.group("host") == me and not _pid_alive(int(m.group("pid")))
    m = _UNHOSTED_TEMP_RE.match(path.name)
    if m is not None:
        return not _pid_alive(int(m.group("pid")))
    return bool(_LEGACY_INGEST_RE.match(path.name))


def sweep_temp(*roots: Path, stale_after_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the temporary files crashed writers left under ``roots`` (recursively); return what was removed.

    Kept: files of a writer process still alive on this host, and files of other hosts' writers younger than
    ``stale_after_s``. Directories holding removed files are fsynced."""
    me, now = host_id(), time.time()
    removed: list[Path] = []
    for root in roots:
        if not root.is_dir() or root.is_symlink():
            continue
        # os.walk: symlinked directories are not followed; an unreadable directory (a sandbox's private scratch)
        # is skipped rather than stopping the service from opening its home
        candidates = [Path(d) / n for d, _dirs, files in os.walk(root) for n in files if n.startswith(".")]
        for path in sorted(candidates):
            if not is_temp_name(path.name):
                continue
            if path.is_symlink() or not path.is_file():
                continue
            if not _removable(path, me, now, stale_after_s):
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
