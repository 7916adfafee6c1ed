"""User-code failures come back as `CodeFailure` with a scrubbed reason; the full story stays in the
owner-only logs. Everything the sandbox writes back is re-validated by the parent."""

from __future__ import annotations

import json
import os

import pytest

from sandbox.coderun import FAILURE_REASONS, CodeFailure, CodeOutcome, run_code

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the code sandbox must start as root")

SECRET = "PERSON-4711-INCOME-98765"


def failed(outcome: CodeOutcome) -> CodeFailure:
    assert isinstance(outcome, CodeFailure), outcome
    assert outcome.reason.split(":")[0] in FAILURE_REASONS
    return outcome


def run(src: str, limits, config, kind: str = "json", inputs=None) -> CodeFailure:
    return failed(run_code(src, "main", inputs or {}, kind, 4096, limits, config=config))


@pytest.mark.parametrize(("raise_stmt", "reason"), [
    (f"raise ValueError({SECRET!r})", "exception: ValueError"),
    (f"raise KeyError({SECRET!r})", "exception: KeyError"),
    (f"raise RuntimeError({SECRET!r}) from ZeroDivisionError()", "exception: RuntimeError"),
    # a user-defined class name can carry data: only its nearest built-in ancestor is reported
    (f"raise type('{SECRET.replace('-', '_')}', (LookupError,), {{}})()", "exception: LookupError"),
    (f"raise type('Leak_{SECRET.replace('-', '_')}', (Exception,), {{}})()", "exception: Exception"),
    ("import pyarrow as pa\n    pa.array(['x']).cast(pa.int64())", "exception: ValueError"),  # ArrowInvalid
    ("raise KeyboardInterrupt", "exception: KeyboardInterrupt"),
])
def test_exceptions_are_scrubbed(raise_stmt, reason, tax_income, limits, config):
    f = run(f"def main(inputs):\n    x = {SECRET!r}\n    {raise_stmt}\n", limits, config, inputs={"t": tax_income})
    assert f.reason == reason
    assert SECRET not in f.reason and SECRET.replace("-", "_") not in f.reason
    assert SECRET not in f.detail and SECRET.replace("-", "_") not in f.detail
    assert "Traceback" in f.stderr_tail  # the owner's log keeps the story


def test_data_values_from_inputs_never_reach_the_reason(tax_income, limits, config):
    src = "def main(inputs):\n    raise ValueError(str(inputs['t'].to_pylist()))\n"
    f = run(src, limits, config, inputs={"t": tax_income})
    assert f.reason == "exception: ValueError"
    assert "P0003" not in f.reason + f.detail and "P0003" in f.stderr_tail


@pytest.mark.parametrize(("body", "reason"), [
    ("import sys\n    sys.exit(0)", "exited"),
    ("import sys\n    sys.exit(3)", "exited"),
    ("import os\n    os._exit(0)", "exited"),
    ("import os\n    os._exit(3)", "exited"),
    ("import os, signal\n    os.kill(os.getpid(), signal.SIGSEGV)", "crashed"),
    ("import os, signal\n    os.kill(os.getpid(), signal.SIGKILL)", "killed"),
])
def test_exits_and_signals(body, reason, limits, config):
    assert run(f"def main(inputs):\n    {body}\n", limits, config).reason == reason


@pytest.mark.parametrize("value", ["object()", "{1, 2}", "float('nan')", "{'a': float('inf')}", "b'bytes'"])
def test_non_json_outputs_are_invalid(value, limits, config):
    assert run(f"def main(inputs):\n    return {value}\n", limits, config).reason == "invalid_output"


@pytest.mark.parametrize("value", ["'not bytes'", "__import__('pickle').dumps({'a': 1})", "b'\\x00' * 64",
                                   "__import__('numpy').ones(4).tobytes()"])
def test_model_outputs_must_be_safetensors(value, limits, config):
    assert run(f"def main(inputs):\n    return {value}\n", limits, config, kind="model").reason == "invalid_output"


def forged(status: dict, result: bytes = b"") -> str:
    """Code that writes its own status (and result bytes) on the harness's pipes, then exits."""
    return ("import json, os\ndef main(inputs):\n    cfg = json.load(open('/veilbox/config.json'))\n"
            f"    os.write(cfg['result_fd'], {result!r})\n"
            f"    os.write(cfg['status_fd'], {(json.dumps(status) + chr(10)).encode()!r})\n    os._exit(0)\n")


def test_forged_status_cannot_bypass_output_validation(limits, config):
    # The code shares the harness's process: it can write its own "done ok". The parent still validates.
    src = forged({"event": "done", "status": "ok", "bytes": 8}, b"\x80\x04pickle")
    assert run(src, limits, config).reason == "invalid_output"
    f = run(forged({"event": "done", "status": "error", "reason": SECRET}), limits, config)
    assert f.reason == "crashed" and SECRET not in f.reason + f.detail
    f = run(forged({"event": "done", "status": "error", "reason": "exception", "type": SECRET}), limits, config)
    assert f.reason == "exception"
    f = run(forged({"event": "done", "status": "ok", "bytes": 99}, b"[1]"), limits, config)
    assert f.reason == "invalid_output"


def test_code_cannot_fake_a_sandbox_failure(limits, config):
    # "unsafe" is only believed before "ready": a forged one is the code's own failure, not INTERNAL.
    f = run(forged({"event": "unsafe", "checks": ["network_namespace"]}), limits, config)
    assert f.reason == "exited"


def test_status_spam_does_not_stop_the_supervisor(limits, config):
    src = ("import json, os\ndef main(inputs):\n    cfg = json.load(open('/veilbox/config.json'))\n"
           "    for _ in range(64):\n        os.write(cfg['status_fd'], b'x' * 65536)\n    return 1\n")
    outcome = run_code(src, "main", {}, "json", 64, limits, config=config)
    assert isinstance(outcome, CodeFailure) and outcome.reason == "exited"  # its own "done" was drowned


def test_forked_children_release_nothing(limits, config):
    src = "import os\ndef main(inputs):\n    os.fork()\n    os.fork()\n    return {'pid': os.getpid()}\n"
    outcome = run_code(src, "main", {}, "json", 4096, limits, config=config)
    assert not isinstance(outcome, CodeFailure), outcome
    assert outcome.value() == {"pid": 2}  # only the harness process (PID 2 of the namespace) reports
