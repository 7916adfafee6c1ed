"""The trusted harness that runs *inside* the custom-code sandbox (standard library only; never imported by
the parent, which copies this file into the sandbox read-only).

Order of operations, each step before any submitted code runs:

1. Lock resource limits (soft = hard; the uid has no capability to raise them) and mark the process
   non-dumpable (no core dumps, no ptrace by the sandbox's own uid).
2. Verify the isolation it was promised, and refuse (status ``unsafe``, exit 70) if any check fails: not
   root, no supplementary groups, the expected uid, no capabilities in any set, ``no_new_privs`` on, a seccomp
   filter installed, no network interface but ``lo``, no ``/etc/passwd``, no ``/proc``.
3. Report ``ready`` on the status pipe, then execute the submission and call the entrypoint with `Inputs`.
4. Serialise the return value (JSON, or raw bytes for a model) to the result pipe, report ``done`` with a
   scrubbed status — a reason keyword or the name of the nearest *built-in* exception class, never a message,
   value or user-defined name — and print the full traceback to stderr, which only the data owner sees.

The parent treats everything written on the pipes as untrusted: the submitted code shares this process and
can write to them too. What this harness offers is a convenient, honest default, not a security boundary.
"""

from __future__ import annotations

import builtins
import ctypes
import json
import os
import resource
import socket
import sys
import traceback
from collections.abc import Iterator, Mapping
from typing import Any

_PR_CAPBSET_READ = 23
_PR_SET_DUMPABLE = 4
_PR_GET_SECCOMP = 21
_PR_GET_NO_NEW_PRIVS = 39
_CAP_VERSION_3 = 0x20080522
_EXIT_UNSAFE = 70


class Inputs(Mapping[str, Any]):
    """The run's inputs: ``inputs[name]`` is a ``pyarrow.Table`` (read on first use, then cached);
    ``inputs.path(name)`` is the read-only Parquet file it came from."""

    def __init__(self, paths: Mapping[str, str]) -> None:
        self._paths = dict(paths)
        self._tables: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._tables:
            import pyarrow.parquet as pq

            self._tables[name] = pq.read_table(self._paths[name], memory_map=False)
        return self._tables[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def path(self, name: str) -> str:
        return self._paths[name]

    @property
    def paths(self) -> dict[str, str]:
        return dict(self._paths)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _emit(fd: int, event: dict[str, Any]) -> None:
    line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
    while line:
        line = line[os.write(fd, line):]


def _lock_limits(rlimits: Mapping[str, int]) -> None:
    for name, value in rlimits.items():
        which = getattr(resource, name)
        if name == "RLIMIT_CPU":  # SIGXCPU at the limit, SIGKILL one second later
            resource.setrlimit(which, (value, value + 1))
        else:
            resource.setrlimit(which, (value, value))


def _isolation_problems(cfg: Mapping[str, Any]) -> list[str]:
    problems = []
    libc = ctypes.CDLL(None, use_errno=True)
    if 0 in (os.getuid(), os.geteuid(), os.getgid(), os.getegid()):
        problems.append("root_identity")
    if os.getuid() != cfg["uid"] or os.getgid() != cfg["uid"]:
        problems.append("unexpected_uid")
    if os.getgroups():
        problems.append("supplementary_groups")
    header, data = _CapHeader(_CAP_VERSION_3, 0), (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        problems.append("capget_failed")
    elif any(d.effective or d.permitted or d.inheritable for d in data):
        problems.append("capabilities")
    cap = 0
    while (held := libc.prctl(_PR_CAPBSET_READ, cap, 0, 0, 0)) >= 0:
        if held:
            problems.append("bounding_set")
            break
        cap += 1
    if libc.prctl(_PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1:
        problems.append("no_new_privs")
    if libc.prctl(_PR_GET_SECCOMP, 0, 0, 0, 0) != 2:
        problems.append("seccomp")
    try:
        names = sorted(name for _, name in socket.if_nameindex())
    except OSError:
        names = ["?"]
    if names != ["lo"]:
        problems.append("network_namespace")
    if os.path.exists("/etc/passwd") or os.path.exists("/proc/self"):
        problems.append("mount_namespace")
    return problems


def _builtin_exception_name(exc: BaseException) -> str | None:
    """The nearest built-in ancestor of the exception's class (``ArrowInvalid`` -> ``ValueError``)."""
    for klass in type(exc).__mro__:
        if klass.__module__ == "builtins" and getattr(builtins, klass.__name__, None) is klass:
            return klass.__name__
    return None


def _json_default(value: Any) -> Any:
    for attr in ("as_py", "tolist", "item"):  # pyarrow scalars, numpy arrays and scalars
        fn = getattr(value, attr, None)
        if callable(fn):
            return fn()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _serialise(value: Any, kind: str) -> bytes:
    if kind == "model":
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError("a model output must be bytes (for example safetensors.numpy.save(...))")
        return bytes(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      default=_json_default).encode("utf-8")


def _call_entrypoint(cfg: Mapping[str, Any]) -> Any:
    with open(cfg["code_path"], encoding="utf-8") as f:
        code = compile(f.read(), "user_code.py", "exec", dont_inherit=True)
    namespace: dict[str, Any] = {"__name__": "user_code", "__builtins__": builtins}
    exec(code, namespace)  # noqa: S102 - running the approved submission is this harness's job
    return namespace[cfg["entrypoint"]](Inputs(cfg["inputs"]))


def _run(cfg: Mapping[str, Any], status_fd: int, result_fd: int) -> None:
    pid = os.getpid()

    def done(log: bool, **event: Any) -> None:
        if os.getpid() != pid:  # a process the submitted code forked: it reports and releases nothing
            os._exit(0)
        if log:
            traceback.print_exc()
        _emit(status_fd, {"event": "done", **event})

    try:
        value = _call_entrypoint(cfg)
    except MemoryError:
        done(True, status="error", reason="memory_limit")
        return
    except SystemExit:
        done(False, status="error", reason="exited")
        return
    except BaseException as e:
        done(True, status="error", reason="exception", type=_builtin_exception_name(e))
        return
    try:
        payload = _serialise(value, cfg["kind"])
    except MemoryError:
        done(True, status="error", reason="memory_limit")
        return
    except Exception:
        done(True, status="error", reason="invalid_output")
        return
    if os.getpid() != pid:
        os._exit(0)
    if len(payload) > cfg["max_bytes"]:
        done(False, status="error", reason="output_too_large")
        return
    view = memoryview(payload)
    while view:
        view = view[os.write(result_fd, view):]
    done(False, status="ok", bytes=len(payload))


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        cfg = json.load(f)
    status_fd, result_fd = cfg["status_fd"], cfg["result_fd"]
    for fd in (status_fd, result_fd):
        os.set_inheritable(fd, False)
    _lock_limits(cfg["rlimits"])
    ctypes.CDLL(None).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    problems = _isolation_problems(cfg)
    if problems:
        _emit(status_fd, {"event": "unsafe", "checks": problems})
        return _EXIT_UNSAFE
    sys.path[:] = [*cfg["sys_path"]]
    sys.dont_write_bytecode = True
    os.chdir(cfg["workdir"])
    _emit(status_fd, {"event": "ready"})
    _run(cfg, status_fd, result_fd)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # do not wait for threads the submitted code may have left running


if __name__ == "__main__":
    sys.exit(main())
