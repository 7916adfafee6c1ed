"""The bubblewrap command line of one custom-code run: what the sandbox's filesystem contains and which
namespaces, identity and privileges the process gets.

The sandbox's root is an empty, read-only tmpfs into which only these are mounted:

- ``/usr`` (read-only; ``/bin``, ``/lib``, ``/lib64``… as on the host: symlinks into it, or read-only binds);
- the interpreter's installation prefix, read-only at its host path (its own site-packages is masked by an
  empty read-only tmpfs unless exposed);
- the exposed site-packages directories outside the prefix, read-only at ``/site/<n>`` (never at their host
  paths, which would reveal the host's directory layout, e.g. where the service is checked out);
- ``/inputs/<name>.parquet``: read-only copies of the inputs, nothing else from the data store;
- ``/veilbox``: the harness, the submitted source and the run's configuration, read-only;
- ``/tmp``: a fresh size-capped tmpfs, the working directory and the only writable place;
- ``/dev``: a minimal device set (null, zero, full, random, urandom, tty, a private pts and shm).

No ``/etc``, ``/proc``, ``/sys``, ``/home``, ``/root``, ``/var`` or data directory exists inside unless a
runtime path above happens to live under one (then only that path, e.g. ``/root/.pyenv/versions/3.11.7``).
New network (only ``lo``), PID, IPC, UTS and cgroup namespaces; ``--die-with-parent`` ties the sandbox's
PID 1 to the supervising process, and killing PID 1 kills every process in the namespace. bwrap keeps only
CAP_SETUID/CAP_SETGID/CAP_SETPCAP for ``setpriv``, which empties the bounding set, clears all capability sets
and supplementary groups, and switches to the run's unprivileged uid before the interpreter starts.
``no_new_privs`` is set by bwrap and the seccomp filter (`_seccomp`) is loaded before the first exec.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import PurePosixPath

__all__ = ["SANDBOX_TMP", "Runtime", "SandboxLayout", "bwrap_argv", "discover_runtime"]

# The sandbox's own fresh tmpfs (never the host's /tmp): the working directory and only writable place.
SANDBOX_TMP = "/tmp"  # noqa: S108
# Where site-packages directories outside the interpreter's prefix appear inside the sandbox.
SITE_ROOT = "/site"

_TOP_LEVEL_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


@dataclass(frozen=True)
class Runtime:
    """The interpreter the sandbox runs and the host directories it needs."""

    python: str  # real path of the interpreter binary
    prefix: str  # its installation prefix (bound read-only)
    sys_path: tuple[str, ...]  # the harness's sys.path (sandbox paths): stdlib, lib-dynload, site dirs
    site_dirs: tuple[str, ...]  # host site-packages exposed read-only
    site_mounts: tuple[tuple[str, str], ...]  # (host dir, sandbox path) for site dirs outside prefix and /usr
    masked: tuple[str, ...]  # directories under the prefix hidden behind an empty tmpfs


@dataclass(frozen=True)
class SandboxLayout:
    """Host-side sources of one run's mounts (all inside its private staging directory)."""

    inputs: dict[str, str]  # name -> staged host file, mounted at /inputs/<name>.parquet
    veilbox_dir: str  # staged harness, source and config, mounted at /veilbox
    tmp_bytes: int


def _under(path: str, root: str) -> bool:
    return PurePosixPath(path).is_relative_to(root)


def discover_runtime(site_dirs: tuple[str, ...] | None = None) -> Runtime:
    """Describe the current interpreter (raises ``RuntimeError`` if it cannot be sandboxed)."""
    python = os.path.realpath(sys.executable)
    prefix = os.path.realpath(sys.base_prefix)
    if not (_under(python, prefix) or _under(python, "/usr")):
        raise RuntimeError("interpreter binary lives outside its prefix")
    stdlib = os.path.realpath(sysconfig.get_path("stdlib"))
    if not (_under(stdlib, prefix) or _under(stdlib, "/usr")):
        raise RuntimeError("standard library lives outside the prefix")
    zipped = os.path.join(prefix, "lib", f"python{sys.version_info[0]}{sys.version_info[1]}.zip")
    stdlib_paths = [p for p in (zipped, stdlib, os.path.join(stdlib, "lib-dynload")) if os.path.exists(p)]
    chosen = site.getsitepackages() if site_dirs is None else list(site_dirs)
    sites: list[str] = []
    for d in chosen:
        real = os.path.realpath(d)
        if os.path.isdir(real) and real not in sites:
            sites.append(real)
    for d in sites:
        if d == "/" or any(_under(d, p) for p in ("/proc", "/sys", "/dev", "/etc")):
            raise RuntimeError(f"refusing to expose {d}")
    masked = []
    own_site = os.path.join(stdlib, "site-packages")
    if os.path.isdir(own_site) and _under(own_site, prefix) and own_site not in sites \
            and not any(_under(s, own_site) for s in sites):
        masked.append(own_site)
    mounts: list[tuple[str, str]] = []
    visible: list[str] = []
    for d in sites:
        if _under(d, prefix) or _under(d, "/usr"):
            visible.append(d)
        else:
            mounts.append((d, f"{SITE_ROOT}/{len(mounts)}"))
            visible.append(mounts[-1][1])
    return Runtime(python=python, prefix=prefix, sys_path=(*stdlib_paths, *visible), site_dirs=tuple(sites),
                   site_mounts=tuple(mounts), masked=tuple(masked))


def _ancestors(path: str) -> list[str]:
    parts = PurePosixPath(path).parents
    return [str(p) for p in reversed(parts) if str(p) != "/"]


def _ro_bind(src: str, dest: str, made: set[str]) -> list[str]:
    """Bind ``src`` read-only at ``dest``, first creating world-traversable parents (bwrap would copy the
    host's modes, which may be 0700 and lock the unprivileged uid out of its own runtime)."""
    args: list[str] = []
    for parent in _ancestors(dest):
        if parent not in made:
            made.add(parent)
            args += ["--perms", "0755", "--dir", parent]
    made.add(dest)
    return [*args, "--ro-bind", src, dest]


def bwrap_argv(bwrap: str, setpriv: str, runtime: Runtime, layout: SandboxLayout, uid: int,
               env: dict[str, str], seccomp_fd: int, info_fd: int, block_fd: int, command: list[str]) -> list[str]:
    """The full argv: bwrap options, then ``setpriv`` dropping to ``uid``, then ``command``.

    bwrap reads the seccomp program from ``seccomp_fd`` and writes the host pid of the sandbox's PID 1 as JSON
    to ``info_fd`` (the supervisor pins it with a pidfd to kill the whole namespace). The sandbox then waits
    for a byte on ``block_fd`` before anything of the run starts (time to move PID 1 into the run's cgroup)."""
    made: set[str] = set()
    argv = [bwrap,
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup",
            "--hostname", "sandbox", "--die-with-parent", "--new-session",
            "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP",
            "--clearenv"]
    for key, value in sorted(env.items()):
        argv += ["--setenv", key, value]
    argv += ["--ro-bind", "/usr", "/usr"]
    made.add("/usr")
    for link in _TOP_LEVEL_LINKS:
        if os.path.islink(link):
            argv += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            argv += _ro_bind(link, link, made)
    argv += ["--dev", "/dev", "--perms", "1777", "--size", str(layout.tmp_bytes), "--tmpfs", SANDBOX_TMP]
    made.add(SANDBOX_TMP)
    if not _under(runtime.prefix, "/usr"):
        argv += _ro_bind(runtime.prefix, runtime.prefix, made)
    for path in runtime.masked:
        argv += ["--perms", "0755", "--tmpfs", path, "--remount-ro", path]
    for host, inside in runtime.site_mounts:
        argv += _ro_bind(host, inside, made)
    argv += ["--perms", "0755", "--dir", "/inputs"]
    for name, src in sorted(layout.inputs.items()):
        argv += ["--ro-bind", src, f"/inputs/{name}.parquet"]
    argv += ["--ro-bind", layout.veilbox_dir, "/veilbox", "--remount-ro", "/", "--chdir", SANDBOX_TMP,
             "--seccomp", str(seccomp_fd), "--info-fd", str(info_fd), "--block-fd", str(block_fd),
             setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
             "--ambient-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
             *command]
    return argv
