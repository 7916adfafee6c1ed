"""No sandbox, no run: a missing or subverted isolation layer makes the runner refuse with INTERNAL
(generic message, cause in the host log) and the submitted code never executes."""

from __future__ import annotations

import logging
import os
import socket
import stat
from pathlib import Path

import pytest

import sandbox.coderun._seccomp as seccomp_module
import sandbox.coderun.runner as runner_module
from catalog.errors import INTERNAL, DomainError
from sandbox.coderun import SandboxConfig, check_sandbox, run_code

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the code sandbox must start as root")

HELLO = "def main(inputs):\n    return 'hello'\n"


def refused(caplog, source: str = HELLO, **config) -> str:
    caplog.set_level(logging.ERROR, logger="sandbox.coderun.runner")
    caplog.clear()
    with pytest.raises(DomainError) as e:
        run_code(source, "main", {}, "json", 64, config=SandboxConfig(**config))
    assert e.value.code == INTERNAL
    assert e.value.message == "the custom-code sandbox is unavailable"  # generic: no host detail
    return caplog.text


def test_missing_bwrap_refuses(caplog, tmp_path):
    log = refused(caplog, bwrap=str(tmp_path / "no-such-bwrap"))
    assert "no-such-bwrap is missing" in log


def test_missing_setpriv_refuses(caplog, tmp_path):
    assert "missing" in refused(caplog, setpriv=str(tmp_path / "no-such-setpriv"))


def test_not_root_refuses(caplog, monkeypatch):
    monkeypatch.setattr(runner_module.os, "geteuid", lambda: 1000)
    assert "must start as root" in refused(caplog)


def test_unknown_machine_refuses(caplog, monkeypatch):
    monkeypatch.setattr(seccomp_module.platform, "machine", lambda: "riscv64")
    assert "no seccomp syscall table" in refused(caplog)


def test_check_sandbox_reports_unavailability(tmp_path):
    with pytest.raises(DomainError) as e:
        check_sandbox(SandboxConfig(bwrap=str(tmp_path / "nope")))
    assert e.value.code == INTERNAL


@as_root
def test_check_sandbox_passes_here():
    check_sandbox()


@as_root
def test_bwrap_that_fails_to_start_refuses(caplog):
    assert "did not start" in refused(caplog, bwrap="/bin/false")


def fake_bwrap(tmp_path: Path, name: str, body: str) -> str:
    """A wrapper that rewrites the runner's bwrap arguments before calling the real bwrap."""
    path = tmp_path / name
    path.write_text("#!/bin/bash\nargs=()\nskip=0\nfor a in \"$@\"; do\n"
                    "  if [ $skip -gt 0 ]; then skip=$((skip-1)); continue; fi\n"
                    f"{body}\n  args+=(\"$a\")\ndone\nexec /usr/bin/bwrap \"${{args[@]}}\"\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@as_root
def test_sandbox_sharing_the_host_network_refuses_before_user_code(caplog, tmp_path):
    if sorted(n for _, n in socket.if_nameindex()) == ["lo"]:
        pytest.skip("the host has only loopback: a shared network namespace is indistinguishable")
    bwrap = fake_bwrap(tmp_path, "bwrap-share-net", '  if [ "$a" = "--unshare-net" ]; then continue; fi')
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        src = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n{HELLO}"
        log = refused(caplog, src, bwrap=bwrap)
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()  # the module-level connect never ran
    assert "network_namespace" in log


@as_root
def test_sandbox_without_seccomp_refuses(caplog, tmp_path):
    bwrap = fake_bwrap(tmp_path, "bwrap-no-seccomp", '  if [ "$a" = "--seccomp" ]; then skip=1; continue; fi')
    assert "'seccomp'" in refused(caplog, bwrap=bwrap)


@as_root
def test_sandbox_exposing_host_files_refuses(caplog, tmp_path):
    bwrap = fake_bwrap(tmp_path, "bwrap-etc", '  if [ "$a" = "--remount-ro" ]; then args+=(--ro-bind /etc /etc); fi')
    assert "mount_namespace" in refused(caplog, bwrap=bwrap)
