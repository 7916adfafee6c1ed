"""Resource limits of one custom-code run, and where the sandbox's tools live.

`Limits` are enforced in layers: the wall clock by the parent (it kills the whole sandbox), CPU seconds,
address space, file size, processes/threads and open files by ``setrlimit`` inside the sandbox (hard
limit = soft limit; the sandboxed uid holds no ``CAP_SYS_RESOURCE`` to raise them), the scratch space by
the size of the sandbox's tmpfs, and captured stdout/stderr by a tail buffer in the parent.

Worst-case memory of one run is bounded by ``max_processes x memory_bytes`` (each process gets its own
address space limit) plus ``tmp_bytes``; keep the product well under the host's RAM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from catalog.errors import INTERNAL, DomainError, invalid

__all__ = ["Limits", "SandboxConfig"]

_MiB = 1 << 20
_GiB = 1 << 30


def _between(name: str, value: float, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise invalid(f"limit {name} must be between {lo:g} and {hi:g}",
                      [{"rule": "limit_range", "at": name, "hint": f"{lo:g}..{hi:g}"}])


@dataclass(frozen=True)
class Limits:
    """Per-run resource limits (defaults suit a small aggregate or model export over one dataset)."""

    wall_seconds: float = 30.0
    cpu_seconds: int = 20
    memory_bytes: int = 1 * _GiB  # RLIMIT_AS, per process
    file_bytes: int = 16 * _MiB  # RLIMIT_FSIZE: largest file the code may write
    max_processes: int = 16  # RLIMIT_NPROC for the run's own uid: processes *and* threads
    max_open_files: int = 64  # RLIMIT_NOFILE
    tmp_bytes: int = 64 * _MiB  # size of the tmpfs that is /tmp (the working directory)
    threads: int = 2  # thread-pool size hint for Arrow / BLAS / OpenMP
    log_tail_bytes: int = 16 * 1024  # stdout and stderr each keep this many trailing bytes

    def __post_init__(self) -> None:
        _between("wall_seconds", self.wall_seconds, 0.5, 3600)
        _between("cpu_seconds", self.cpu_seconds, 1, 3600)
        _between("memory_bytes", self.memory_bytes, 512 * _MiB, 64 * _GiB)
        _between("file_bytes", self.file_bytes, 1 * _MiB, 4 * _GiB)
        _between("max_processes", self.max_processes, 4, 1024)
        _between("max_open_files", self.max_open_files, 16, 4096)
        _between("tmp_bytes", self.tmp_bytes, 1 * _MiB, 16 * _GiB)
        _between("threads", self.threads, 1, 64)
        _between("log_tail_bytes", self.log_tail_bytes, 0, 1 * _MiB)
        for name in ("cpu_seconds", "memory_bytes", "file_bytes", "max_processes", "max_open_files",
                     "tmp_bytes", "threads", "log_tail_bytes"):
            if not isinstance(getattr(self, name), int):
                raise invalid(f"limit {name} must be an integer")
        if self.threads + 2 > self.max_processes:
            raise invalid("limit threads must leave room under max_processes")


@dataclass(frozen=True)
class SandboxConfig:
    """Host-side tools and identity of the sandbox. The defaults are the Debian paths.

    ``uid=None`` draws a fresh unprivileged uid (and the same gid) for every run from
    ``[uid_base, uid_base + uid_span)``: runs cannot share an RLIMIT_NPROC budget or own each other's
    processes. The range must not belong to real accounts; nothing is ever written to disk under it.
    ``site_dirs`` defaults to the current interpreter's site-packages; narrowing it (a dedicated venv holding
    only pyarrow, numpy and safetensors) narrows what submitted code can import.
    ``cgroup``: ``auto`` adds a per-run cgroup (memory and pids for the whole run) when the host allows it,
    ``required`` refuses to run without one, ``off`` relies on rlimits alone.
    """

    bwrap: str = "/usr/bin/bwrap"
    setpriv: str = "/usr/bin/setpriv"
    uid: int | None = None
    uid_base: int = 1_500_000_000
    uid_span: int = 1 << 20
    site_dirs: tuple[str, ...] | None = None
    staging_dir: str | None = None  # where per-run private directories are made (default: tempdir)
    tmpfs_dir: str | None = None  # memory-backed filesystem for a real run's input (default /dev/shm; see tmpfs)
    cgroup: Literal["auto", "off", "required"] = "auto"  # run-wide memory/pids cap (see _cgroup)
    cgroup_parent: str | None = None  # cgroup v2: a delegated directory with memory+pids enabled

    def __post_init__(self) -> None:
        if self.uid is not None and not 1000 <= self.uid < 2**31 - 1:
            raise DomainError(INTERNAL, "sandbox uid must be an unprivileged id")
        if self.uid_base < 1000 or self.uid_span < 1 or self.uid_base + self.uid_span >= 2**31 - 1:
            raise DomainError(INTERNAL, "sandbox uid range must be unprivileged ids")
        if self.cgroup not in ("auto", "off", "required"):
            raise DomainError(INTERNAL, "sandbox cgroup mode must be auto, off or required")
