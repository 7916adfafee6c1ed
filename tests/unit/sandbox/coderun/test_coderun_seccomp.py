"""The seccomp program: well-formed for each supported machine, and its syscall numbers pinned to the
kernel's own headers where those are installed."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from sandbox.coderun import _seccomp


@pytest.mark.parametrize("machine", _seccomp.SUPPORTED_MACHINES)
def test_program_shape(machine):
    prog = _seccomp.build_filter(machine)
    assert len(prog) % 8 == 0 and 8 < len(prog) // 8 < 256
    insns = [struct.unpack("=HBBI", prog[i:i + 8]) for i in range(0, len(prog), 8)]
    assert insns[0] == (0x20, 0, 0, 4)  # load arch
    assert insns[2] == (0x06, 0, 0, 0x80000000)  # foreign ABI: kill the process
    assert insns[-1] == (0x06, 0, 0, 0x7FFF0000)  # default: allow
    for code, jt, jf, _ in insns:  # every jump stays inside the program
        assert code != 0x15 or jt + jf < len(insns)


def test_unknown_machine_is_refused():
    with pytest.raises(ValueError):
        _seccomp.build_filter("riscv64")


def _header_numbers(path: str, pattern: str) -> dict[str, int]:
    p = Path(path)
    if not p.exists():
        pytest.skip(f"{path} not installed (linux-libc-dev)")
    return {m.group(1): int(m.group(2)) for m in re.finditer(pattern, p.read_text())}


@pytest.mark.parametrize(("column", "path", "pattern"), [
    (0, "/usr/include/x86_64-linux-gnu/asm/unistd_64.h", r"#define __NR_(\w+)\s+(\d+)"),
    (1, "/usr/include/asm-generic/unistd.h", r"#define __NR(?:3264)?_(\w+)\s+(\d+)"),
])
def test_syscall_numbers_match_kernel_headers(column, path, pattern):
    numbers = _header_numbers(path, pattern)
    table = {**_seccomp._DENY_EPERM, "clone": _seccomp._CLONE, "clone3": _seccomp._CLONE3}
    for name, nrs in table.items():
        if nrs[column] is not None:
            assert numbers[name] == nrs[column], name
