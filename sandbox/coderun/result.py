"""Outcomes of a custom-code run: a released-candidate output, or a failure with a scrubbed reason.

Who may see what: ``reason`` (and the output itself, once the owner releases it) may go to the submitter;
``detail``, ``stdout_tail`` and ``stderr_tail`` are **for the data owner only** — the submitted code wrote
them and may have printed raw values into them.

Failure reasons (the complete vocabulary):

- ``timeout``: the wall-clock limit expired; the whole sandbox was killed.
- ``cpu_limit``: RLIMIT_CPU was reached (SIGXCPU).
- ``memory_limit``: an allocation failed under RLIMIT_AS (``MemoryError``).
- ``file_size_limit``: a write exceeded RLIMIT_FSIZE (SIGXFSZ).
- ``output_too_large``: the output exceeded ``max_bytes``.
- ``invalid_output``: the return value is not JSON-serialisable / not valid safetensors bytes.
- ``exception: <Name>``: the code raised; ``<Name>`` is the nearest *built-in* exception class
  (``ArrowInvalid`` is reported as ``ValueError``, a user-defined class as ``Exception``); never its message.
- ``exception``: the code raised something that has no built-in ancestor to name.
- ``exited``: the code exited (``sys.exit``, ``os._exit``) instead of returning.
- ``killed``: the process was killed by SIGKILL (hard CPU limit, or the kernel).
- ``crashed``: the process died on another signal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["FAILURE_REASONS", "CodeFailure", "CodeOutcome", "CodeResult"]

FAILURE_REASONS = ("timeout", "cpu_limit", "memory_limit", "file_size_limit", "output_too_large",
                   "invalid_output", "exception", "exited", "killed", "crashed")


@dataclass(frozen=True)
class CodeResult:
    """A successful run: the validated output, ready for the release gate (not yet released)."""

    output_bytes: bytes
    output_kind: Literal["json", "model"]
    digest: str  # "<alg>:<hex>" of output_bytes, the home suite's hash (sha256: intl, sm3: sm)
    stdout_tail: str  # owner only
    stderr_tail: str  # owner only
    duration_s: float
    run_id: str
    on_mock: bool = False

    @property
    def ok(self) -> Literal[True]:
        """Always True: lets callers branch on a `CodeOutcome` without isinstance."""
        return True

    def value(self) -> Any:
        """The decoded JSON value (``json`` outputs only)."""
        if self.output_kind != "json":
            raise TypeError("only json outputs have a value")
        return json.loads(self.output_bytes)


@dataclass(frozen=True)
class CodeFailure:
    """A run that produced no releasable output. ``reason`` is scrubbed; the rest is for the owner."""

    reason: str
    detail: str  # owner only: exit status / signal / which check failed
    stdout_tail: str  # owner only
    stderr_tail: str  # owner only
    duration_s: float
    run_id: str
    on_mock: bool = False

    @property
    def ok(self) -> Literal[False]:
        """Always False: lets callers branch on a `CodeOutcome` without isinstance."""
        return False


CodeOutcome = CodeResult | CodeFailure
