"""Resource limits: wall-clock and CPU timeouts kill the whole sandbox, memory and file-size limits hold,
a fork bomb is contained and leaves nothing behind, oversized outputs and logs are refused or trimmed."""

from __future__ import annotations

import os
import time

import pytest

from sandbox.coderun import CodeFailure, CodeOutcome, Limits, run_code

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the code sandbox must start as root")


def failed(outcome: CodeOutcome) -> CodeFailure:
    assert isinstance(outcome, CodeFailure), outcome
    return outcome


def run(src: str, limits: Limits, config, **kw) -> CodeFailure:
    kw.setdefault("output_kind", "json")
    kw.setdefault("max_bytes", 1024)
    return failed(run_code(src, "main", kw.pop("inputs", {}), kw["output_kind"], kw["max_bytes"], limits,
                           config=config))


@pytest.mark.parametrize("body", ["while True:\n        pass",
                                  "import time\n    while True:\n        time.sleep(0.05)"])
def test_wall_clock_timeout_kills_everything(body, config, processes_of):
    src = f"import os\ndef main(inputs):\n    os.fork()\n    {body}\n"  # two looping processes
    started = time.monotonic()
    f = run(src, Limits(wall_seconds=1.5, cpu_seconds=60), config)
    assert f.reason == "timeout"
    assert time.monotonic() - started < 6
    assert processes_of(config.uid) == []


def test_cpu_limit(config):
    f = run("def main(inputs):\n    while True:\n        pass\n", Limits(wall_seconds=30, cpu_seconds=1), config)
    assert f.reason in ("cpu_limit", "killed"), f  # SIGXCPU at the soft limit, SIGKILL one second later
    assert f.duration_s < 25


@pytest.mark.parametrize("alloc", ["bytearray(4 << 30)", "__import__('numpy').ones(1 << 29)",
                                   "[bytearray(64 << 20) for _ in range(64)]"])
def test_memory_limit(alloc, config):
    f = run(f"def main(inputs):\n    x = {alloc}\n    return len(x)\n", Limits(memory_bytes=1 << 30), config)
    assert f.reason == "memory_limit"


def test_memory_limit_does_not_stop_normal_work(config):
    src = "def main(inputs):\n    x = bytearray(256 << 20)\n    return len(x)\n"
    outcome = run_code(src, "main", {}, "json", 64, Limits(memory_bytes=1 << 30), config=config)
    assert not isinstance(outcome, CodeFailure), outcome


def test_fork_bomb_is_contained(config, processes_of):
    src = "import os\ndef main(inputs):\n    while True:\n        os.fork()\n"
    started = time.monotonic()
    f = run(src, Limits(wall_seconds=10, max_processes=16), config)
    assert f.reason == "exception: BlockingIOError"  # fork fails with EAGAIN at RLIMIT_NPROC
    assert time.monotonic() - started < 10
    assert processes_of(config.uid) == []


def test_persistent_fork_bomb_is_killed_with_its_namespace(config, processes_of):
    src = ("import os\ndef main(inputs):\n    while True:\n        try:\n            os.fork()\n"
           "        except OSError:\n            pass\n")
    started = time.monotonic()
    f = run(src, Limits(wall_seconds=2, max_processes=16), config)
    assert f.reason == "timeout"
    assert time.monotonic() - started < 8
    assert processes_of(config.uid) == []


def test_orphans_die_with_the_run(config, processes_of):
    src = ("import os, time\ndef main(inputs):\n    if os.fork() == 0:\n        os.setsid()\n"
           "        time.sleep(600)\n    return 'parent done'\n")
    outcome = run_code(src, "main", {}, "json", 64, Limits(wall_seconds=20), config=config)
    assert not isinstance(outcome, CodeFailure), outcome
    assert processes_of(config.uid) == []


def test_output_over_the_limit_is_refused(config):
    f = run("def main(inputs):\n    return 'x' * 5000\n", Limits(), config, max_bytes=1000)
    assert f.reason == "output_too_large"


def test_output_written_around_the_harness_is_capped_by_the_parent(config):
    # The code writes straight to the result pipe; the parent stops reading at max_bytes + 1 and kills.
    src = ("import json, os\ndef main(inputs):\n    cfg = json.load(open('/veilbox/config.json'))\n"
           "    while True:\n        os.write(cfg['result_fd'], b'x' * 65536)\n")
    started = time.monotonic()
    f = run(src, Limits(wall_seconds=20), config, max_bytes=100_000)
    assert f.reason == "output_too_large"
    assert time.monotonic() - started < 10


def test_file_size_and_tmp_space_limits(config):
    src = ("def main(inputs):\n    out = {}\n    for name, n in (('big', 8 << 20), ('small', 1 << 19)):\n"
           "        try:\n            open('/tmp/' + name, 'wb').write(b'x' * n)\n            out[name] = 'ok'\n"
           "        except OSError as e:\n            out[name] = e.errno\n"
           "    try:\n        for i in range(64):\n            open(f'/tmp/f{i}', 'wb').write(b'x' * (1 << 20))\n"
           "        out['fill'] = 'ok'\n    except OSError as e:\n        out['fill'] = e.errno\n    return out\n")
    outcome = run_code(src, "main", {}, "json", 256, Limits(file_bytes=1 << 20, tmp_bytes=4 << 20), config=config)
    assert not isinstance(outcome, CodeFailure), outcome
    assert outcome.value() == {"big": 27, "small": "ok", "fill": 28}  # EFBIG; ENOSPC on the 4 MiB tmpfs


def test_open_files_limit(config):
    src = "def main(inputs):\n    return [open('/dev/null') for _ in range(1000)] and 'no limit'\n"
    assert run(src, Limits(max_open_files=64), config).reason == "exception: OSError"


def test_logs_are_captured_with_a_cap(config):
    src = ("import sys\ndef main(inputs):\n    print('a' * 100_000)\n    print('THE END')\n"
           "    sys.stderr.write('e' * 50_000)\n    return 1\n")
    outcome = run_code(src, "main", {}, "json", 64, Limits(log_tail_bytes=4096), config=config)
    assert outcome.ok
    assert outcome.stdout_tail.endswith("THE END\n") and len(outcome.stdout_tail) < 4200
    assert outcome.stdout_tail.startswith("[... ")
    assert len(outcome.stderr_tail) < 4200
