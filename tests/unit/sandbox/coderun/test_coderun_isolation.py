"""Isolation claims, each proved end to end through `run_code`: no network, no file outside the inputs and
the runtime, no inherited environment, no writes outside /tmp, read-only inputs, no privileges."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from sandbox.coderun import CodeOutcome, CodeResult, Limits, SandboxConfig, run_code
from sandbox.coderun._bwrap import discover_runtime

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the code sandbox must start as root")

# Runs every probe in the sandbox and reports ("ok", repr) or ("err", exception type name) for each.
PROBE = """
import os

PROBES = {probes}

def main(inputs):
    out = {{}}
    for name, expr in PROBES.items():
        try:
            out[name] = ["ok", repr(eval(expr))[:2000]]
        except BaseException as e:
            out[name] = ["err", type(e).__name__]
    return out
"""


def probe(probes: dict[str, str], inputs: dict[str, Path], config: SandboxConfig, limits: Limits,
          prelude: str = "") -> dict[str, list[str]]:
    outcome: CodeOutcome = run_code(prelude + PROBE.format(probes=probes), "main", inputs, "json", 1 << 20, limits,
                                    config=config)
    assert isinstance(outcome, CodeResult), outcome
    return outcome.value()


def test_no_network_to_a_listening_host_port(tax_income, config, limits):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        got = probe({"connect": f"__import__('socket').create_connection(('127.0.0.1', {port}), timeout=2)",
                     "udp": f"__import__('socket').socket(2, 2).sendto(b'x', ('127.0.0.1', {port}))",
                     "outbound": "__import__('socket').create_connection(('1.1.1.1', 443), timeout=2)"},
                    {"t": tax_income}, config, limits)
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing from the sandbox ever reached the host's loopback
    assert got["connect"] == ["err", "ConnectionRefusedError"]  # the sandbox's own, empty loopback
    assert got["outbound"][0] == "err"
    assert got["udp"][0] == "ok"  # sent into the sandbox's private lo, where nobody listens


def test_only_loopback_and_no_dns(tax_income, config, limits):
    got = probe({"ifaces": "__import__('socket').if_nameindex()",
                 "dns": "__import__('socket').getaddrinfo('example.com', 443)",
                 "resolv": "open('/etc/resolv.conf').read()",
                 "hosts": "open('/etc/hosts').read()"}, {"t": tax_income}, config, limits)
    assert got["ifaces"] == ["ok", "[(1, 'lo')]"]
    assert got["dns"] == ["err", "gaierror"]
    assert got["resolv"] == got["hosts"] == ["err", "FileNotFoundError"]


def test_no_reads_outside_the_inputs(home, tax_income, config, limits):
    other = home / "data" / "other.parquet"
    got = probe({"meta_db": f"open({str(home / 'meta.db')!r}).read()",
                 "sibling_dataset": f"open({str(other)!r}, 'rb').read()",
                 "data_dir": f"os.listdir({str(home / 'data')!r})",
                 "input_host_path": f"open({str(tax_income)!r}, 'rb').read(4)",
                 "shadow": "open('/etc/shadow').read()",
                 "passwd": "open('/etc/passwd').read()",
                 "host_pid1_environ": "open('/proc/1/environ', 'rb').read()",
                 "proc": "os.listdir('/proc')",
                 "sys": "os.listdir('/sys')",
                 "home": "os.listdir('/home')",
                 "var": "os.listdir('/var')",
                 "inputs": "sorted(os.listdir('/inputs'))",
                 "input": "open('/inputs/t.parquet', 'rb').read(4)",
                 "root_fs": "sorted(os.listdir('/'))",
                 "checkout": f"os.listdir({str(Path(__file__).resolve().parents[4])!r})",
                 "venv": f"os.listdir({sys.prefix!r})" if sys.prefix != sys.base_prefix else "os.listdir('/nope')"},
                {"t": tax_income}, config, limits)
    for name in ("checkout", "venv", "meta_db", "sibling_dataset", "data_dir", "input_host_path", "shadow", "passwd",
                 "host_pid1_environ", "proc", "sys", "home", "var"):
        assert got[name] == ["err", "FileNotFoundError"], name
    assert got["inputs"] == ["ok", "['t.parquet']"]
    assert got["input"] == ["ok", "b'PAR1'"]
    assert eval(got["root_fs"][1]) == sorted(set(eval(got["root_fs"][1])) & {
        "bin", "dev", "inputs", "lib", "lib32", "lib64", "libx32", "root", "sbin", "site", "tmp", "usr", "veilbox"})


def test_root_holds_at_most_the_python_runtime(config, limits):
    runtime_top = {Path(p).parts[2] for p in (sys.base_prefix, sys.prefix) if Path(p).parts[1:2] == ("root",)}
    host_root = set(os.listdir("/root"))
    got = probe({"root": "sorted(os.listdir('/root'))",
                 **{f"host:{name}": f"os.stat('/root/{name}')" for name in sorted(host_root - runtime_top)}},
                {}, config, limits)
    if not host_root - runtime_top:
        pytest.skip("the host's /root holds nothing but the runtime")
    if got["root"][0] == "ok":
        assert set(eval(got["root"][1])) <= runtime_top
    else:
        assert got["root"] == ["err", "FileNotFoundError"]
    for name in host_root - runtime_top:
        assert got[f"host:{name}"] == ["err", "FileNotFoundError"], name


def test_environment_is_not_inherited(tax_income, config, limits, monkeypatch):
    monkeypatch.setenv("VEILBOX_HOME", "/srv/veilbox")
    monkeypatch.setenv("VEILBOX_DATABASE_URL", "postgresql://veilbox:hunter2@db/veilbox")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter3")
    got = probe({"env": "dict(os.environ)"}, {"t": tax_income}, config, limits)
    env = eval(got["env"][1])
    assert not [k for k in env if k.startswith("VEILBOX_")]
    assert "hunter2" not in got["env"][1] and "hunter3" not in got["env"][1]
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "PWD", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                        "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS", "ARROW_IO_THREADS", "MALLOC_ARENA_MAX",
                        "ARROW_DEFAULT_MEMORY_POOL"}


def test_writes_only_inside_tmp(tax_income, config, limits):
    site_dir = next(p for p in sys.path if p.endswith("site-packages"))
    inside = dict(discover_runtime().site_mounts).get(os.path.realpath(site_dir), site_dir)
    got = probe({"tmp": "open('/tmp/scratch', 'w').write('ok')",
                 "cwd": "os.getcwd()",
                 "rootfs": "open('/evil', 'w')",
                 "usr": "open('/usr/evil', 'w')",
                 "veilbox": "open('/veilbox/user_code.py', 'a')",
                 "inputs_dir": "open('/inputs/evil', 'w')",
                 "site_packages": f"open({inside + '/evil.py'!r}, 'w')",
                 "stdlib": f"open({os.path.dirname(os.__file__) + '/evil.py'!r}, 'w')",
                 "mkdir_root": "os.mkdir('/etc')"},
                {"t": tax_income}, config, limits)
    assert got["tmp"] == ["ok", "2"]
    assert got["cwd"] == ["ok", "'/tmp'"]
    for name in ("rootfs", "usr", "veilbox", "inputs_dir", "site_packages", "stdlib", "mkdir_root"):
        assert got[name][0] == "err" and got[name][1] in ("OSError", "PermissionError"), (name, got[name])
    assert not os.path.exists("/evil") and not os.path.exists(site_dir + "/evil.py")


def test_inputs_are_read_only(tax_income, config, limits):
    before = tax_income.read_bytes()
    got = probe({"append": "open('/inputs/t.parquet', 'ab')",
                 "truncate": "os.truncate('/inputs/t.parquet', 0)",
                 "chmod": "os.chmod('/inputs/t.parquet', 0o666)",
                 "unlink": "os.unlink('/inputs/t.parquet')",
                 "rename": "os.rename('/inputs/t.parquet', '/tmp/t.parquet')"}, {"t": tax_income}, config, limits)
    for name, result in got.items():
        assert result[0] == "err" and result[1] in ("OSError", "PermissionError"), (name, result)
    assert tax_income.read_bytes() == before


def test_unprivileged_identity_and_no_privileges(tax_income, config, limits):
    prelude = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
    got = probe({"ids": "(os.getuid(), os.geteuid(), os.getgid(), os.getgroups())",
                 "setuid0": "os.setuid(0)",
                 "kill_pid1": "os.kill(1, 9)",
                 "nnp": "libc.prctl(39, 0, 0, 0, 0)",
                 "seccomp_mode": "libc.prctl(21, 0, 0, 0, 0)",
                 "dumpable": "libc.prctl(3, 0, 0, 0, 0)",
                 "hostname": "__import__('socket').gethostname()",
                 "pid": "os.getpid()"}, {"t": tax_income}, config, limits, prelude)
    assert got["ids"] == ["ok", repr((config.uid, config.uid, config.uid, []))]
    assert got["setuid0"] == ["err", "PermissionError"]
    assert got["kill_pid1"] == ["err", "PermissionError"]
    assert got["nnp"] == ["ok", "1"] and got["seccomp_mode"] == ["ok", "2"] and got["dumpable"] == ["ok", "0"]
    assert got["hostname"] == ["ok", "'sandbox'"]
    assert int(got["pid"][1]) < 10  # a fresh PID namespace


@pytest.mark.parametrize("call", ["libc.unshare(0x10000000)", "libc.unshare(0x40000000)",
                                  "libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)",
                                  "libc.syscall(101, 16, 1, 0, 0)",  # ptrace(PTRACE_ATTACH, 1)
                                  "libc.syscall(250, 0, 0, 0, 0)",  # keyctl
                                  "libc.syscall(321, 0, 0, 0)",  # bpf
                                  "libc.syscall(425, 1, 0)",  # io_uring_setup
                                  "libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)",  # clone(CLONE_NEWUSER)
                                  "libc.chroot(b'/tmp')"])
def test_seccomp_refuses_kernel_surface(call, config, limits):
    if os.uname().machine != "x86_64" and "syscall(" in call:
        pytest.skip("raw syscall numbers are x86-64")
    got = probe({"r": f"({call}, ctypes.get_errno())"}, {}, config, limits,
                "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n")
    assert got["r"] == ["ok", "(-1, 1)"]  # EPERM


def test_threads_and_subprocesses_still_work(config, limits):
    prelude = "import subprocess, concurrent.futures as cf\n"
    got = probe({"threads": "list(cf.ThreadPoolExecutor(2).map(lambda x: x * x, range(4)))",
                 "clone3": "__import__('ctypes').CDLL(None, use_errno=True).syscall(435, 0, 0) == -1 "
                           "and __import__('ctypes').get_errno()",
                 "sh": "subprocess.run(['/bin/sh', '-c', 'echo hi'], capture_output=True).stdout"},
                {}, config, limits, prelude)
    assert got["threads"] == ["ok", "[0, 1, 4, 9]"]
    assert got["sh"] == ["ok", "b'hi\\n'"]
    if os.uname().machine == "x86_64":
        assert got["clone3"] == ["ok", "38"]  # ENOSYS: glibc falls back to clone, whose flags are checked


def test_only_the_exposed_site_packages_are_importable(config, limits):
    import site
    import sysconfig

    own = os.path.join(os.path.realpath(sysconfig.get_path("stdlib")), "site-packages")
    exposed = {os.path.realpath(p) for p in site.getsitepackages()}
    if not os.path.isdir(own) or own in exposed or not os.listdir(own):
        pytest.skip("the interpreter has no separate, non-empty site-packages of its own")
    got = probe({"listing": f"os.listdir({own!r})", "write": f"open({own + '/evil.py'!r}, 'w')",
                 "sys_path": "__import__('sys').path"}, {}, config, limits)
    assert got["listing"] == ["ok", "[]"]  # masked by an empty read-only tmpfs
    assert got["write"][0] == "err"
    assert own not in eval(got["sys_path"][1])
