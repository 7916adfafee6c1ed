"""The query worker: a separate process (``python -m sandbox.engine._child``) holding the locked DuckDB.

Guarantees:

- The parent talks to the child over its stdin/stdout with length-prefixed JSON frames (no pickle, no
  re-import of the caller's ``__main__``); the child's stdout carries nothing else.
- The child first makes itself unable to write any file (`sandbox.engine.nowrite.forbid_file_writes`, a
  seccomp filter on all its threads), then builds its connection with `connect_locked` (DESIGN.md lockdown
  order) over views that read the registered Parquet files **in place** (``allowed_paths`` = exactly those
  files; nothing is copied into memory). A registered file sealed at rest (`catalog.sealed`) is first
  decrypted by the child into an anonymous memory file of its own (``memfd``, sealed against writes), and the
  view reads that: the parent sends the suite and the file's data key in the start frame over the child's stdin
  (never argv, environment or disk), so plaintext exists only in the child's memory and dies with it. Where
  the guard is unavailable (not Linux x86-64/AArch64, no seccomp) it materialises the tables instead, as
  before, with empty allow-lists. It executes only what the parent sends: canonical SQL produced by the
  rewriter (plus the salt as a bound parameter).
- Only aggregate rows leave the child. Besides the rewriter's guarantee (aggregate-only SQL over a public key
  table), the child refuses any result with more rows than the plan's key count, a different column count, or
  a non-scalar value.
- Every query runs under a timer that calls ``con.interrupt()`` after ``timeout_s``; a child that does not
  answer in time plus a grace period is killed and restarted on the next call.
- Engine errors never cross the pipe as text: the child logs them locally (to its own stderr logger) and
  replies with a generic reason (``timeout``, ``engine``, ``result_check``); the parent raises
  `EngineFailure(reason)`.

Per-unit bounding is elided, per (table, unit column, max rows), once the child has verified that no unit
has more rows than the bound: the bounded and unbounded queries then return identical results, only faster.
(`sandbox.sql.service` sends the unbounded twin directly, with no check, when ingest already counted the
units' rows in the registered file.)
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import logging
import os
import select
import struct
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from catalog.sealed import Sealer

__all__ = ["EngineFailure", "ExecRequest", "QueryWorker"]

_log = logging.getLogger("veilbox.sandbox.worker")
_GRACE_S = 10.0
_START_TIMEOUT_S = 600.0


class EngineFailure(Exception):
    """A query the engine could not complete; ``reason`` is generic (no engine text)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ExecRequest:
    """What the parent sends: canonical SQL, its unbounded twin, and the result shape to enforce."""

    sql: str
    params: dict[str, str]
    max_rows: int
    ncols: int
    unbounded_sql: str | None = None
    bound_check: tuple[str, str, int] | None = None  # (table, unit column, max rows per unit)


def _scalar(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | str | float):
        return v
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, dt.date | dt.datetime):
        return v.isoformat()
    raise TypeError("non-scalar value in a result")


def _send(out: IO[bytes], msg: dict[str, Any]) -> None:
    data = json.dumps(msg, allow_nan=True).encode()
    out.write(struct.pack(">I", len(data)) + data)
    out.flush()


def _read_exact(inp: IO[bytes], n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = inp.read(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def _recv(inp: IO[bytes]) -> dict[str, Any]:
    (n,) = struct.unpack(">I", _read_exact(inp, 4))
    msg: dict[str, Any] = json.loads(_read_exact(inp, n))
    return msg


def open_sealed(data_paths: Mapping[str, str], suite: str | None, keys: Mapping[str, str]) -> dict[str, str]:
    """``data_paths`` with every sealed file replaced by an anonymous memory file of this process holding its
    plaintext (``/proc/self/fd/<fd>``, sealed against writes; `catalog.sealed.memory_file`). A plain file stays
    as it is (a home registered before encryption at rest)."""
    from catalog.sealed import GivenKeys, Sealer, is_sealed, memory_file

    out: dict[str, str] = {}
    for name, path in data_paths.items():
        if not is_sealed(Path(path)):
            out[name] = path
            continue
        if suite is None:
            raise ValueError("a sealed file and no suite")
        given = GivenKeys({k: base64.b64decode(v) for k, v in keys.items()})
        plain = Sealer(suite, given).read_file(Path(path))
        fd = memory_file(f"veilbox-{name}", plain)
        del plain
        out[name] = f"/proc/self/fd/{fd}"
    return out


def _serve(inp: IO[bytes], out: IO[bytes], data_paths: dict[str, str], threads: int, memory_limit: str,
           timeout_s: float, suite: str | None = None,
           keys: Mapping[str, str] | None = None) -> None:  # pragma: no cover - runs in the child process
    import duckdb

    from sandbox.engine.hardening import connect_locked, quote_ident
    from sandbox.engine.nowrite import forbid_file_writes

    try:
        in_place = forbid_file_writes()
        if not in_place:
            _log.warning("file-write guard unavailable: tables are materialised in memory")
        readable = open_sealed(data_paths, suite, keys or {})  # plaintext in this process's memory only
        con = connect_locked({k: Path(v) for k, v in readable.items()}, threads=threads,
                             memory_limit=memory_limit, in_place=in_place)
    except Exception as e:
        _log.error("worker failed to load its tables: %s", type(e).__name__)
        _send(out, {"ready": False})
        return
    _send(out, {"ready": True})
    bounded: dict[tuple[str, str, int], bool] = {}

    def run(sql: str, params: dict[str, str] | None) -> tuple[list[tuple[Any, ...]], int]:
        timer = threading.Timer(timeout_s, con.interrupt)
        timer.start()
        try:
            cur = con.execute(sql, params) if params else con.execute(sql)
            rows = cur.fetchall()
            return rows, len(cur.description or [])
        finally:
            timer.cancel()

    while True:
        try:
            msg = _recv(inp)
        except EOFError:
            break
        if msg.get("op") == "stop":
            break
        if msg.get("op") == "ping":
            _send(out, {"ok": True})
            continue
        req = ExecRequest(**msg["request"])
        try:
            sql, params = req.sql, req.params
            if req.bound_check is not None and req.unbounded_sql is not None:
                table, unit, m = req.bound_check
                key = (table, unit, int(m))
                if key not in bounded:
                    check, _ = run(
                        f"SELECT COALESCE(MAX(c), 0) FROM (SELECT COUNT(*) AS c FROM {quote_ident(table)} "
                        f"GROUP BY {quote_ident(unit)})", None)
                    bounded[key] = int(check[0][0]) <= int(m)
                if bounded[key]:
                    sql, params = req.unbounded_sql, {}
            rows, ncols = run(sql, params)
            if len(rows) > req.max_rows or ncols != req.ncols:
                _log.error("result check failed: %d rows (max %d), %d columns", len(rows), req.max_rows, ncols)
                _send(out, {"ok": False, "reason": "result_check"})
                continue
            _send(out, {"ok": True, "rows": [[_scalar(v) for v in r] for r in rows]})
        except duckdb.InterruptException:
            _send(out, {"ok": False, "reason": "timeout"})
        except duckdb.Error as e:
            _log.error("engine error %s", type(e).__name__)
            _log.debug("engine error detail: %s", e)
            _send(out, {"ok": False, "reason": "engine"})
        except TypeError:
            _log.error("result check failed: non-scalar value")
            _send(out, {"ok": False, "reason": "result_check"})
    con.close()


def _child_main() -> None:  # pragma: no cover - runs in the child process
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # The protocol gets a private copy of fd 1; fd 1 itself then points at stderr, so nothing written by C code
    # (DuckDB's progress bar, a library's print) can corrupt a frame.
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer
    cfg = _recv(inp)
    _serve(inp, out, cfg["data_paths"], int(cfg["threads"]), str(cfg["memory_limit"]), float(cfg["timeout_s"]),
           cfg.get("suite"), cfg.get("keys"))


class QueryWorker:
    """A reusable worker process over the sandbox's Parquet copies (table name → path).

    ``start()`` launches the child and waits until its tables are loaded and locked; ``execute()`` runs one
    request at a time (thread-safe); ``stop()`` ends the child. A dead or hung child is restarted lazily.
    ``execute`` is the service's internal path: callers outside `sandbox.sql.service` must only ever pass
    canonical SQL from a `QueryPlan` (the locked connection is the second line of defence, not the first).
    """

    def __init__(self, data_paths: Mapping[str, Path | str], threads: int = 2, memory_limit: str = "2GB",
                 timeout_s: float = 30.0, sealer: Sealer | None = None) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.data_paths = {k: str(v) for k, v in data_paths.items()}
        self.sealer = sealer
        self.threads = threads
        self.memory_limit = memory_limit
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> QueryWorker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def alive(self) -> bool:
        """True while the worker process is running."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The worker process's id (None before the first start)."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the worker process unless it runs; `EngineFailure` if it does not report ready."""
        with self._lock:
            self._start()

    def _start(self) -> None:
        if self.alive:
            return
        try:
            keys = self._keys()
        except Exception as e:  # no key service, a destroyed data key, a damaged header: nothing starts
            _log.error("worker cannot get its data keys: %s", type(e).__name__)
            raise EngineFailure("unavailable") from None
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox.engine._child"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        self._proc = proc
        try:
            _send(proc.stdin, {"data_paths": self.data_paths, "threads": self.threads,
                               "memory_limit": self.memory_limit, "timeout_s": self.timeout_s, **keys})
            ready = self._reply(_START_TIMEOUT_S)
        except (EOFError, OSError, TimeoutError):
            ready = {"ready": False}
        if not ready.get("ready"):
            self._kill()
            raise EngineFailure("unavailable")

    def _keys(self) -> dict[str, Any]:
        """The suite and the data keys of the sealed files, for the child (sent over its stdin pipe only)."""
        from catalog.sealed import is_sealed, key_id_of

        sealed = [Path(p) for p in self.data_paths.values() if is_sealed(Path(p))]
        if not sealed:
            return {}
        if self.sealer is None:
            raise LookupError("a sealed dataset and no key service")
        keys = {}
        for p in sealed:
            kid = key_id_of(p)
            keys[kid] = base64.b64encode(self.sealer.keys.data_key(kid)).decode()
        return {"suite": self.sealer.suite_name, "keys": keys}

    def _reply(self, timeout: float) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError
        return _recv(proc.stdout)

    def stop(self) -> None:
        """Ask the worker to exit, then kill it if it has not within 5 s; a no-op when it never started."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            try:
                assert proc.stdin is not None
                _send(proc.stdin, {"op": "stop"})
                proc.stdin.close()
                proc.wait(5)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
            self._kill()

    def execute(self, request: ExecRequest) -> list[list[Any]]:
        """The rows of ``request``; raise EngineFailure with a generic reason."""
        with self._lock:
            if not self.alive:
                self._kill()
                self._start()
            proc = self._proc
            assert proc is not None and proc.stdin is not None
            try:
                _send(proc.stdin, {"op": "query", "request": asdict(request)})
                reply = self._reply(self.timeout_s * 2 + _GRACE_S)
            except (TimeoutError, EOFError, OSError, ValueError):
                self._kill()
                raise EngineFailure("timeout") from None
            if not reply.get("ok"):
                raise EngineFailure(str(reply.get("reason", "engine")))
            return list(reply["rows"])

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass

