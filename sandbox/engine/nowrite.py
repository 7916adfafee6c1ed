"""The query worker's file-write guard: a seccomp filter after which the process can change no file.

Why: the worker reads the registered Parquet files in place, so their paths are in DuckDB's ``allowed_paths``,
and DuckDB applies that list to writes as well as reads — raw ``COPY … TO '<data file>' (USE_TMP_FILE false)``
would overwrite the dataset. DuckDB has no read-only allow-list, and the worker may run as root, where file
modes do not help. The kernel does: `forbid_file_writes` installs, on every thread of the process
(``SECCOMP_FILTER_FLAG_TSYNC``) and for all its future threads and children, a classic BPF filter under which

- ``open``/``openat`` with any of ``O_WRONLY``, ``O_RDWR``, ``O_CREAT``, ``O_TRUNC``, ``O_APPEND`` fail with
  ``EACCES`` (reads still open; ``O_TMPFILE`` needs a write mode, so it fails too);
- ``creat``, ``truncate``, ``rename*``, ``unlink*``, ``rmdir``, ``mkdir*``, ``mknod*``, ``link*``,
  ``symlink*``, ``chmod``/``fchmod*``, ``chown``/``fchown*``, ``*setxattr``, ``*removexattr`` and
  ``open_by_handle_at`` fail with ``EACCES``; ``openat2`` and ``io_uring_setup`` fail with ``ENOSYS`` (their
  flags live in memory a BPF filter cannot read; glibc falls back to ``openat``);
- a syscall made with a foreign ABI (i386 or x32 on x86-64) kills the process.

File descriptors opened before the filter (the worker's pipes, stderr) keep working; a descriptor opened
read-only afterwards cannot be written, truncated or mapped writable by the kernel's own rules. Only x86-64
and AArch64 Linux are supported: elsewhere `forbid_file_writes` returns False and installs nothing, and the
worker falls back to materialising its tables (empty allow-lists, `sandbox.engine.hardening`).

``tests/unit/sandbox/sql/test_sql_engine_in_place.py`` drives a guarded worker with raw ``COPY … TO`` the data
file, its directory and elsewhere, and checks in a separate process that writes fail and reads work.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import platform
import struct
import sys

__all__ = ["forbid_file_writes", "supported"]

_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06

_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000

_OFF_NR = 0
_OFF_ARCH = 4


def _off_arg_lo(i: int) -> int:
    return 16 + 8 * i  # struct seccomp_data.args[i], low 32 bits (little-endian)


_X32_SYSCALL_BIT = 0x40000000
# O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND: the same values on x86-64 and AArch64 (asm-generic).
_WRITE_FLAGS = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000

# name -> (x86-64 number, AArch64 number); None where the syscall does not exist on that ABI.
_DENY_EACCES: dict[str, tuple[int | None, int | None]] = {
    "creat": (85, None),
    "truncate": (76, 45),
    "rename": (82, None),
    "renameat": (264, 38),
    "renameat2": (316, 276),
    "unlink": (87, None),
    "unlinkat": (263, 35),
    "rmdir": (84, None),
    "mkdir": (83, None),
    "mkdirat": (258, 34),
    "mknod": (133, None),
    "mknodat": (259, 33),
    "link": (86, None),
    "linkat": (265, 37),
    "symlink": (88, None),
    "symlinkat": (266, 36),
    "chmod": (90, None),
    "fchmod": (91, 52),
    "fchmodat": (268, 53),
    "fchmodat2": (452, 452),
    "chown": (92, None),
    "lchown": (94, None),
    "fchown": (93, 55),
    "fchownat": (260, 54),
    "setxattr": (188, 5),
    "lsetxattr": (189, 6),
    "fsetxattr": (190, 7),
    "removexattr": (197, 14),
    "lremovexattr": (198, 15),
    "fremovexattr": (199, 16),
    "open_by_handle_at": (304, 265),
}
_DENY_ENOSYS: dict[str, tuple[int | None, int | None]] = {"openat2": (437, 437), "io_uring_setup": (425, 425)}
# name -> ((x86-64 number, AArch64 number), index of the flags argument)
_OPEN_CALLS: dict[str, tuple[tuple[int | None, int | None], int]] = {"open": ((2, None), 1),
                                                                    "openat": ((257, 56), 2)}
_SECCOMP = (317, 277)
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_TSYNC = 1
_PR_SET_NO_NEW_PRIVS = 38

_ARCHES: dict[str, tuple[int, int]] = {
    "x86_64": (62 | 0x80000000 | 0x40000000, 0),
    "aarch64": (183 | 0x80000000 | 0x40000000, 1),
}


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def supported(machine: str | None = None) -> bool:
    """True on the platforms `forbid_file_writes` can guard (Linux on x86-64 or AArch64)."""
    return sys.platform.startswith("linux") and (machine or platform.machine()) in _ARCHES


def build_filter(machine: str | None = None) -> bytes:
    """The filter as raw ``struct sock_filter`` records."""
    machine = machine or platform.machine()
    if machine not in _ARCHES:
        raise ValueError(f"no syscall table for machine {machine!r}")
    audit_arch, col = _ARCHES[machine]
    eacces = _RET_ERRNO | errno.EACCES
    prog = [
        _insn(_LD_W_ABS, _OFF_ARCH),
        _insn(_JEQ_K, audit_arch, jt=1, jf=0),
        _insn(_RET_K, _RET_KILL_PROCESS),
        _insn(_LD_W_ABS, _OFF_NR),
    ]
    if machine == "x86_64":
        prog += [_insn(_JGE_K, _X32_SYSCALL_BIT, jt=0, jf=1), _insn(_RET_K, _RET_KILL_PROCESS)]
    for numbers in _DENY_EACCES.values():
        nr = numbers[col]
        if nr is not None:
            prog += [_insn(_JEQ_K, nr, jt=0, jf=1), _insn(_RET_K, eacces)]
    for numbers in _DENY_ENOSYS.values():
        nr = numbers[col]
        if nr is not None:
            prog += [_insn(_JEQ_K, nr, jt=0, jf=1), _insn(_RET_K, _RET_ERRNO | errno.ENOSYS)]
    # open/openat: refused when a write flag is set. Each block ends in a return, so loading the flags
    # argument (which clobbers the accumulator) is safe.
    for numbers, arg in _OPEN_CALLS.values():
        nr = numbers[col]
        if nr is not None:
            prog += [
                _insn(_JEQ_K, nr, jt=0, jf=4),
                _insn(_LD_W_ABS, _off_arg_lo(arg)),
                _insn(_JSET_K, _WRITE_FLAGS, jt=0, jf=1),
                _insn(_RET_K, eacces),
                _insn(_RET_K, _RET_ALLOW),
            ]
    prog.append(_insn(_RET_K, _RET_ALLOW))
    return b"".join(prog)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def forbid_file_writes() -> bool:
    """Install the filter on every thread of this process; False (nothing installed) where unsupported or
    refused by the kernel (no seccomp).

    Irreversible: call it only in a process that must never write a file again (the worker child)."""
    if not supported():
        return False
    machine = platform.machine()
    code = build_filter(machine)
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _SockFprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False
    nr = _SECCOMP[_ARCHES[machine][1]]
    # With TSYNC the filter goes onto every thread or onto none (a non-zero result), never onto some.
    return bool(libc.syscall(nr, _SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC, ctypes.byref(prog)) == 0)
