"""Custom code: owner-approved Python run in an isolated, resource-limited sandbox (``kind: code`` jobs).

The gateway handles agreements and approval; this package runs what was approved and reports back.

- `runner`: `run_code`, `dry_run_on_mock`, `check_sandbox` — the isolation guarantee is stated there.
- `source`: `check_source` (static refusal before anything runs) and `code_hash` (what approvals bind to).
- `outputs`: `OutputSpec` and the parent's validation of JSON and safetensors outputs.
- `limits`: `Limits` (per-run resources) and `SandboxConfig` (host tools, uid range).
- `tmpfs`: where a real run's plaintext input is staged — a 0700 directory on a tmpfs, never the home's disk.
- `result`: `CodeResult` / `CodeFailure` and the scrubbed failure-reason vocabulary.
- internals: `_bwrap` (the mount/namespace/privilege layout), `_seccomp` (the syscall deny list),
  `_cgroup` (the per-run memory/pids cap), `_harness` (the trusted script that runs inside the sandbox).

Guarantee in one line: the code sees its read-only inputs, the read-only Python runtime and a private
``/tmp``; no network, no other file, no other process, no privilege; if any layer is unavailable it does not
run at all. It can still encode its inputs in its output: the owner reviews the code hash, the mock dry run
and the output before anything is released. See docs/mechanisms/custom_code.md.
"""

from sandbox.coderun.limits import Limits, SandboxConfig
from sandbox.coderun.outputs import OutputSpec
from sandbox.coderun.result import FAILURE_REASONS, CodeFailure, CodeOutcome, CodeResult
from sandbox.coderun.runner import check_sandbox, dry_run_on_mock, run_code
from sandbox.coderun.source import check_source, code_hash

__all__ = [
    "FAILURE_REASONS",
    "CodeFailure",
    "CodeOutcome",
    "CodeResult",
    "Limits",
    "OutputSpec",
    "SandboxConfig",
    "check_sandbox",
    "check_source",
    "code_hash",
    "dry_run_on_mock",
    "run_code",
]
