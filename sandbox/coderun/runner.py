"""Run owner-approved custom code in an isolated, resource-limited sandbox.

Guarantee: the submitted function runs in a child process that has **no network** (a fresh network namespace
with only ``lo``), **sees no file** but its read-only inputs, the read-only Python runtime and a private
size-capped ``/tmp`` (a mount namespace over an empty root), **sees no other process** (a PID namespace),
runs as a **fresh unprivileged uid** with no capabilities, ``no_new_privs`` and a seccomp deny list, under
rlimits for CPU, address space, file size, processes/threads and open files (plus, where the host allows, a
per-run cgroup capping the whole run's memory and pids), with an **empty environment**
(a fixed list of variables; nothing inherited, no ``VEILBOX_*``), and is killed as a whole — every process
in its PID namespace — when the wall clock expires. If bubblewrap, setpriv, root to drop privileges from, or
the seccomp table for this machine is missing, or the harness inside finds any promised layer absent,
nothing runs: `run_code` raises ``DomainError("INTERNAL")`` (a generic message; the specific cause goes to
the host log). There is no fallback to an unisolated run.

Errors and outcomes:

- ``DomainError(INVALID_REQUEST)``: the submission itself is unusable (syntax error, no top-level
  ``def <entrypoint>(inputs)``, oversized source, bad output spec or limits, bad input names/files). Raised
  before anything runs.
- ``DomainError(APPROVAL_REQUIRED)``: ``expected_code_hash`` was given and the submission does not match it.
- ``DomainError(INTERNAL)``: the sandbox is unavailable (see above). Nothing of the code ran; a job should be
  refunded and retried elsewhere, not reported as the code's failure.
- `CodeFailure` (returned): the code ran and failed — timeout, a limit, an exception, an invalid or oversized
  output. Its ``reason`` is scrubbed (see `sandbox.coderun.result`); its logs are for the owner only.
- `CodeResult` (returned): a validated output with its digest, the home suite's hash (``hash_alg``: ``sha256:``
  in ``intl``, ``sm3:`` in ``sm``); ``expected_code_hash`` is checked with the same hash.

What this does **not** do: decide whether the output may leave. Code can encode raw rows in any output it is
allowed to return; the owner reviews the code (its `code_hash`), the dry run on mock data and the output
before release.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import hmac
import json
import logging
import os
import re
import secrets
import select
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from catalog.errors import APPROVAL_REQUIRED, INTERNAL, DomainError, invalid
from catalog.fingerprint import HashAlg, digest
from sandbox.coderun._bwrap import SANDBOX_TMP, Runtime, SandboxLayout, bwrap_argv, discover_runtime
from sandbox.coderun._cgroup import RunCgroup, create_run_cgroup
from sandbox.coderun._seccomp import build_filter
from sandbox.coderun.limits import Limits, SandboxConfig
from sandbox.coderun.outputs import InvalidOutput, OutputSpec, validate_output
from sandbox.coderun.result import CodeFailure, CodeOutcome, CodeResult
from sandbox.coderun.source import check_source, code_hash

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["check_sandbox", "dry_run_on_mock", "run_code"]

_log = logging.getLogger(__name__)

_HARNESS = Path(__file__).with_name("_harness.py")
_INPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_MAX_INPUTS = 16
_STATUS_CAP = 64 * 1024
_EXIT_GRACE_S = 2.0
_SIMPLE_REASONS = {"memory_limit", "output_too_large", "invalid_output", "exited"}


def _unavailable(why: str) -> DomainError:
    _log.error("custom-code sandbox unavailable: %s", why)
    return DomainError(INTERNAL, "the custom-code sandbox is unavailable")


@functools.lru_cache(maxsize=8)
def _runtime(site_dirs: tuple[str, ...] | None) -> Runtime:
    return discover_runtime(site_dirs)


def _preflight(config: SandboxConfig) -> tuple[Runtime, bytes]:
    """Everything the sandbox needs, or a refusal: never a weaker sandbox."""
    if os.geteuid() != 0:
        raise _unavailable("the runner must start as root to drop to a per-run unprivileged uid")
    for tool in (config.bwrap, config.setpriv):
        if not (os.path.isfile(tool) and os.access(tool, os.X_OK)):
            raise _unavailable(f"{tool} is missing or not executable")
    try:
        seccomp = build_filter()
    except ValueError as e:
        raise _unavailable(str(e)) from None
    try:
        runtime = _runtime(config.site_dirs)
    except RuntimeError as e:
        raise _unavailable(str(e)) from None
    return runtime, seccomp


def _check_inputs(inputs: Mapping[str, Path]) -> dict[str, Path]:
    if not isinstance(inputs, Mapping) or len(inputs) > _MAX_INPUTS:
        raise invalid(f"inputs must map at most {_MAX_INPUTS} names to Parquet files")
    checked: dict[str, Path] = {}
    for name, path in inputs.items():
        if not isinstance(name, str) or not _INPUT_NAME.fullmatch(name):
            raise invalid("input names must be identifiers", [{"rule": "input_name", "at": str(name)[:64],
                                                               "hint": "letters, digits, underscore"}])
        p = Path(path)
        try:
            with p.open("rb") as f:
                head = f.read(4)
                f.seek(-4, os.SEEK_END)
                tail = f.read(4)
        except OSError:
            raise invalid("input is not a readable Parquet file", [{"rule": "input_file", "at": name,
                                                                   "hint": "a Parquet file"}]) from None
        if head != b"PAR1" or tail != b"PAR1" or not p.is_file():
            raise invalid("input is not a Parquet file", [{"rule": "input_file", "at": name, "hint": "Parquet"}])
        checked[name] = p
    return checked


def _env(limits: Limits) -> dict[str, str]:
    threads = str(limits.threads)
    return {"PATH": "/usr/bin:/bin", "HOME": SANDBOX_TMP, "TMPDIR": SANDBOX_TMP, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
            "NUMEXPR_NUM_THREADS": threads, "ARROW_IO_THREADS": threads, "MALLOC_ARENA_MAX": "2",
            "ARROW_DEFAULT_MEMORY_POOL": "system"}


def _rlimits(limits: Limits) -> dict[str, int]:
    return {"RLIMIT_CPU": limits.cpu_seconds, "RLIMIT_AS": limits.memory_bytes, "RLIMIT_FSIZE": limits.file_bytes,
            "RLIMIT_NPROC": limits.max_processes, "RLIMIT_NOFILE": limits.max_open_files, "RLIMIT_CORE": 0}


class _Tail:
    """The last ``cap`` bytes of a stream, and how many bytes it carried in total."""

    def __init__(self, cap: int) -> None:
        self.cap, self.total, self.buf = cap, 0, bytearray()

    def __call__(self, chunk: bytes) -> bool:
        self.total += len(chunk)
        self.buf += chunk
        if len(self.buf) > self.cap:
            del self.buf[: len(self.buf) - self.cap]
        return False

    def text(self) -> str:
        dropped = self.total - len(self.buf)
        head = f"[... {dropped} earlier bytes dropped]\n" if dropped else ""
        return head + self.buf.decode("utf-8", "replace")


class _Capped:
    """The first ``cap`` bytes of a stream. With ``stop``, overflowing asks the supervisor to end the run."""

    def __init__(self, cap: int, stop: bool) -> None:
        self.cap, self.stop, self.buf, self.overflow = cap, stop, bytearray(), False

    def __call__(self, chunk: bytes) -> bool:
        room = self.cap - len(self.buf)
        self.buf += chunk[:room]
        if len(chunk) > room:
            self.overflow = True
        return self.overflow and self.stop


@dataclass
class _Run:
    """What the supervisor observed."""

    returncode: int | None = None
    timed_out: bool = False
    overflow: bool = False
    oom_killed: bool = False
    duration_s: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list)


class _Sandbox:
    """The running bwrap process and a pidfd on its PID namespace's init (PID 1).

    Killing PID 1 makes the kernel kill every process in the namespace, and PID 1 only finishes exiting once
    they are all gone: so `kill_all` followed by a successful `wait_gone` means nothing of the run survives,
    whatever it forked, whichever session or process group it moved to.
    """

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.pid1: int | None = None
        self.pidfd: int | None = None

    def pin(self, info_fd: int, deadline: float) -> None:
        """Read bwrap's ``--info-fd`` report and open a pidfd on the namespace's PID 1."""
        info = bytearray()
        while time.monotonic() < deadline and len(info) < 4096:
            ready, _, _ = select.select([info_fd], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(info_fd, 4096) if ready else b""
            if not chunk:
                break
            info += chunk
        try:
            pid1 = int(json.loads(bytes(info))["child-pid"])
        except (ValueError, KeyError, TypeError):
            return  # bwrap failed before creating the namespace; nothing ran
        try:
            pidfd = os.pidfd_open(pid1)
        except OSError:
            return
        if _parent_of(pid1) != self.proc.pid:  # reaped and reused before we pinned it: not ours
            os.close(pidfd)
            return
        self.pid1, self.pidfd = pid1, pidfd

    def kill_all(self) -> None:
        if self.pidfd is not None:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()

    def wait_gone(self, timeout: float = 10.0) -> bool:
        if self.pidfd is None:
            return True
        ready, _, _ = select.select([self.pidfd], [], [], timeout)
        return bool(ready)

    def close(self) -> None:
        self.kill_all()
        self.proc.wait()
        if not self.wait_gone():
            _log.error("custom-code sandbox %s: PID namespace still alive 10 s after SIGKILL", self.pid1)
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _supervise(box: _Sandbox, sinks: dict[int, Callable[[bytes], bool]], started: float, wall_seconds: float,
               run: _Run) -> None:
    proc = box.proc
    deadline = started + wall_seconds
    exited_at: float | None = None
    with selectors.DefaultSelector() as sel:
        for fd, sink in sinks.items():
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ, sink)
        while sel.get_map() and not run.overflow:
            now = time.monotonic()
            if now >= deadline:
                run.timed_out = True
                break
            if proc.poll() is not None:
                exited_at = exited_at or now
                if now - exited_at > _EXIT_GRACE_S:
                    break
            for key, _ in sel.select(timeout=min(0.1, deadline - now)):
                try:
                    chunk = os.read(key.fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(key.fd)
                elif key.data(chunk):
                    run.overflow = True
                    break
    if run.timed_out or run.overflow:
        box.kill_all()
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        run.timed_out = True
        box.kill_all()
        proc.wait()
    run.returncode = proc.returncode
    box.kill_all()  # the run is over: whatever it left behind dies with its namespace
    box.wait_gone()
    run.duration_s = time.monotonic() - started


def _events(raw: bytes) -> list[dict[str, Any]]:
    events = []
    for line in raw.splitlines()[:256]:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def _exception_reason(name: Any) -> str:
    klass = getattr(builtins, name, None) if isinstance(name, str) and name.isidentifier() else None
    if isinstance(klass, type) and issubclass(klass, BaseException):
        return f"exception: {name}"
    return "exception"


def _exit_reason(returncode: int | None) -> tuple[str, str]:
    if returncode is None:
        return "killed", "no exit status"
    sig = returncode - 128 if returncode > 128 else -returncode if returncode < 0 else 0
    if sig == signal.SIGXCPU:
        return "cpu_limit", "SIGXCPU"
    if sig == signal.SIGXFSZ:
        return "file_size_limit", "SIGXFSZ"
    if sig == signal.SIGKILL:
        return "killed", "SIGKILL"
    if sig > 0:
        return "crashed", f"signal {sig}"
    return "exited", f"exit status {returncode}"


def _outcome(run: _Run, spec: OutputSpec, payload: bytes, stdout: _Tail, stderr: _Tail, run_id: str,
             on_mock: bool, hash_alg: HashAlg = "sha256") -> CodeOutcome:
    # Only the harness writes before "ready" (no submitted code has run yet); anything after it may be forged.
    kinds = [e.get("event") for e in run.events]
    ready_at = kinds.index("ready") if "ready" in kinds else len(kinds)
    before, after = run.events[:ready_at], run.events[ready_at + 1:]
    unsafe = [e for e in before if e.get("event") == "unsafe"]
    if unsafe:
        raise _unavailable(f"isolation self-check failed inside the sandbox: {unsafe[0].get('checks')!r}")
    logs: dict[str, Any] = {"stdout_tail": stdout.text(), "stderr_tail": stderr.text(),
                            "duration_s": round(run.duration_s, 3), "run_id": run_id, "on_mock": on_mock}

    def failure(reason: str, detail: str) -> CodeFailure:
        return CodeFailure(reason=reason, detail=detail, **logs)

    if ready_at == len(kinds):
        if run.timed_out:
            return failure("timeout", "the sandbox did not become ready before the wall-clock limit")
        raise _unavailable(f"sandbox did not start (exit {run.returncode}): {stderr.text()[-2000:]!r}")
    if run.timed_out:
        return failure("timeout", "wall-clock limit reached; the sandbox was killed")
    if run.overflow:
        return failure("output_too_large", f"more than {spec.max_bytes} output bytes; the sandbox was killed")
    done = [e for e in after if e.get("event") == "done"]
    if not done:
        if run.oom_killed:
            return failure("memory_limit", "the run's cgroup hit its memory cap (OOM kill)")
        reason, detail = _exit_reason(run.returncode)
        return failure(reason, detail)
    last = done[-1]
    if last.get("status") != "ok":
        reason = str(last.get("reason"))
        if reason == "exception":
            return failure(_exception_reason(last.get("type")), "the entrypoint raised (traceback on stderr)")
        if reason in _SIMPLE_REASONS:
            return failure(reason, f"reported by the harness: {reason}")
        return failure("crashed", "unrecognised status from the sandbox")
    if last.get("bytes") != len(payload):
        return failure("invalid_output", "output length does not match the harness's report")
    try:
        out = validate_output(spec.kind, payload, spec.max_bytes)
    except InvalidOutput as e:
        reason = "output_too_large" if str(e) == "too large" else "invalid_output"
        return failure(reason, f"output rejected: {e}")
    return CodeResult(output_bytes=out, output_kind=spec.kind, digest=digest(out, hash_alg),
                      **logs)


def _stage(run_dir: Path, inputs: dict[str, Path], source: str, cfg: dict[str, Any]) -> SandboxLayout:
    """Private copies of everything the sandbox mounts (root-owned 0700 dir; files 0444 inside)."""
    staged_inputs = run_dir / "inputs"
    staged_inputs.mkdir(mode=0o755)
    layout_inputs = {}
    for name, src in inputs.items():
        dst = staged_inputs / f"{name}.parquet"
        shutil.copyfile(src, dst)
        dst.chmod(0o444)
        layout_inputs[name] = str(dst)
    vb = run_dir / "veilbox"
    vb.mkdir(mode=0o755)
    (vb / "harness.py").write_bytes(_HARNESS.read_bytes())
    (vb / "user_code.py").write_text(source, encoding="utf-8", errors="surrogatepass")
    (vb / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    for f in vb.iterdir():
        f.chmod(0o444)
    vb.chmod(0o555)
    return SandboxLayout(inputs=layout_inputs, veilbox_dir=str(vb), tmp_bytes=cfg["tmp_bytes"])


def run_code(source: str, entrypoint: str, inputs: Mapping[str, Path], output_kind: str, max_bytes: int,
             limits: Limits | None = None, *, config: SandboxConfig | None = None,
             expected_code_hash: str | None = None, hash_alg: HashAlg = "sha256") -> CodeOutcome:
    """Run ``entrypoint(inputs)`` from ``source`` in the sandbox (see the module docstring).

    ``inputs`` maps identifier names to Parquet files; the code sees each as ``inputs[name]`` (a
    ``pyarrow.Table``) and at ``/inputs/<name>.parquet``. ``expected_code_hash``, when given, must equal
    `code_hash` of this submission (the hash the owner approved) with ``hash_alg``, the home suite's hash, which
    also digests the output."""
    return _execute(source, entrypoint, inputs, output_kind, max_bytes, limits, config, expected_code_hash,
                    on_mock=False, hash_alg=hash_alg)


def _execute(source: str, entrypoint: str, inputs: Mapping[str, Path], output_kind: str, max_bytes: int,
             limits: Limits | None, config: SandboxConfig | None, expected_code_hash: str | None,
             on_mock: bool, hash_alg: HashAlg = "sha256") -> CodeOutcome:
    limits = limits or Limits()
    config = config or SandboxConfig()
    if not isinstance(limits, Limits):
        raise invalid("limits must be a Limits")
    spec = OutputSpec.of({"kind": output_kind, "max_bytes": max_bytes})
    check_source(source, entrypoint)
    if expected_code_hash is not None and not hmac.compare_digest(
            expected_code_hash.encode(), code_hash(source, entrypoint, spec, hash_alg).encode()):
        raise DomainError(APPROVAL_REQUIRED, "the code differs from the approved code")
    checked = _check_inputs(inputs)
    runtime, seccomp = _preflight(config)
    uid = config.uid if config.uid is not None else config.uid_base + secrets.randbelow(config.uid_span)
    run_id = secrets.token_hex(8)
    staging = tempfile.mkdtemp(prefix="veilbox-code-", dir=config.staging_dir)
    fds: list[int] = []
    box: _Sandbox | None = None
    cgroup: RunCgroup | None = None
    try:
        if config.cgroup != "off":
            cgroup = create_run_cgroup(f"veilbox-{run_id}", limits.memory_bytes + limits.tmp_bytes,
                                       limits.max_processes + 4, config.cgroup_parent)
            if cgroup is None and config.cgroup == "required":
                raise _unavailable("no usable cgroup for the run (cgroup='required')")
        status_r, status_w = os.pipe()
        result_r, result_w = os.pipe()
        info_r, info_w = os.pipe()
        block_r, block_w = os.pipe()
        seccomp_fd = os.memfd_create("veilbox-seccomp", os.MFD_CLOEXEC)
        fds += [status_r, status_w, result_r, result_w, info_r, info_w, block_r, block_w, seccomp_fd]
        os.write(seccomp_fd, seccomp)
        os.lseek(seccomp_fd, 0, os.SEEK_SET)
        cfg = {"uid": uid, "status_fd": status_w, "result_fd": result_w, "rlimits": _rlimits(limits),
               "sys_path": list(runtime.sys_path), "workdir": SANDBOX_TMP, "code_path": "/veilbox/user_code.py",
               "entrypoint": entrypoint, "kind": spec.kind, "max_bytes": spec.max_bytes,
               "inputs": {name: f"/inputs/{name}.parquet" for name in checked}, "tmp_bytes": limits.tmp_bytes}
        layout = _stage(Path(staging), checked, source, cfg)
        command = [runtime.python, "-I", "-S", "-B", "-u", "/veilbox/harness.py", "/veilbox/config.json"]
        argv = bwrap_argv(config.bwrap, config.setpriv, runtime, layout, uid, _env(limits), seccomp_fd, info_w,
                          block_r, command)
        started = time.monotonic()
        passed = (status_w, result_w, info_w, block_r, seccomp_fd)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                pass_fds=passed, env={}, cwd="/", start_new_session=True)
        for fd in passed:
            os.close(fd)
            fds.remove(fd)
        box = _Sandbox(proc)
        box.pin(info_r, started + limits.wall_seconds)
        if cgroup is not None and box.pid1 is not None:
            try:
                cgroup.attach(box.pid1)
            except OSError as e:
                if config.cgroup == "required":
                    raise _unavailable(f"could not move the sandbox into its cgroup: {e}") from None
                _log.warning("custom-code sandbox runs without its cgroup: %s", e)
        with contextlib.suppress(BrokenPipeError):  # bwrap already gone: classified as "did not start" below
            os.write(block_w, b"go")  # bwrap may now fork the run
        assert proc.stdout is not None and proc.stderr is not None
        stdout, stderr = _Tail(limits.log_tail_bytes), _Tail(max(limits.log_tail_bytes, 4096))
        status, result = _Capped(_STATUS_CAP, stop=False), _Capped(spec.max_bytes, stop=True)
        run = _Run()
        _supervise(box, {proc.stdout.fileno(): stdout, proc.stderr.fileno(): stderr, status_r: status,
                         result_r: result}, started, limits.wall_seconds, run)
        run.overflow = result.overflow
        run.oom_killed = cgroup is not None and cgroup.oom_killed()
        run.events = _events(bytes(status.buf))
        return _outcome(run, spec, bytes(result.buf), stdout, stderr, run_id, on_mock, hash_alg)
    except OSError as e:
        raise _unavailable(f"could not start the sandbox: {e}") from None
    finally:
        if box is not None:
            box.close()
            for stream in (box.proc.stdout, box.proc.stderr):
                if stream is not None:
                    stream.close()
        for fd in fds:
            os.close(fd)
        if cgroup is not None:
            cgroup.remove()
        shutil.rmtree(staging, ignore_errors=True)


def dry_run_on_mock(source: str, entrypoint: str, mocks: Mapping[str, pa.Table], output_kind: str, max_bytes: int,
                    limits: Limits | None = None, *, config: SandboxConfig | None = None,
                    hash_alg: HashAlg = "sha256") -> CodeOutcome:
    """Run the same code in the same sandbox on mock tables (for example `catalog.mock.mock_table`), so the
    owner sees what it does before approving. The outcome is marked ``on_mock=True``; its digest is
    ``hash_alg``'s (the home suite's hash)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    config = config or SandboxConfig()
    check_source(source, entrypoint)
    with tempfile.TemporaryDirectory(prefix="veilbox-mock-", dir=config.staging_dir) as tmp:
        paths: dict[str, Path] = {}
        for name, table in mocks.items():
            if not isinstance(name, str) or not _INPUT_NAME.fullmatch(name) or not isinstance(table, pa.Table):
                raise invalid("mocks must map identifier names to pyarrow Tables")
            paths[name] = Path(tmp) / f"{name}.parquet"
            pq.write_table(table, paths[name])
        return _execute(source, entrypoint, paths, output_kind, max_bytes, limits, config, None, on_mock=True,
                        hash_alg=hash_alg)


def check_sandbox(config: SandboxConfig | None = None) -> None:
    """Start one trivial sandbox end to end; raise ``DomainError(INTERNAL)`` if that is impossible here.
    Cheap enough for a worker's start-up check."""
    outcome = run_code("def main(inputs):\n    return 'ok'\n", "main", {}, "json", 16, Limits(wall_seconds=30),
                       config=config)
    if not isinstance(outcome, CodeResult) or outcome.value() != "ok":
        raise _unavailable(f"self-test run failed: {getattr(outcome, 'reason', '?')}")

