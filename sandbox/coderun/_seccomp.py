"""The seccomp filter loaded into every custom-code sandbox (a classic BPF program handed to bwrap).

Guarantee: inside the sandbox, the syscalls that reach kernel surface a data-processing function never
needs fail with ``EPERM`` — namespace and mount manipulation (``unshare``, ``setns``, ``mount``,
``pivot_root``, ``clone`` with any ``CLONE_NEW*`` flag), tracing and cross-process memory access
(``ptrace``, ``process_vm_*``, ``pidfd_getfd``, ``perf_event_open``, ``bpf``, ``userfaultfd``), keyrings,
file handles, io_uring, kernel modules, clocks, swap and reboot. ``clone3`` fails with ``ENOSYS`` (its flags
live in memory a BPF filter cannot inspect), so glibc falls back to ``clone``, whose flags are checked.
A syscall made with a foreign ABI (i386 ``int 0x80`` or x32 on x86-64) kills the process: the deny list is
keyed by the native syscall numbers only.

This is a deny list layered *under* the namespaces, not the isolation boundary itself: it narrows the shared
kernel's attack surface. Only x86-64 and AArch64 are supported; on any other machine `build_filter` raises
and the runner refuses to start a sandbox.
"""

from __future__ import annotations

import errno
import platform
import struct

__all__ = ["SUPPORTED_MACHINES", "build_filter", "denied_syscalls"]

# Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06

# Seccomp return actions (linux/seccomp.h).
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000

# Offsets in struct seccomp_data: nr (u32), arch (u32), instruction_pointer (u64), args[6] (u64).
_OFF_NR = 0
_OFF_ARCH = 4
_OFF_ARG0_LO = 16  # little-endian: the low 32 bits of args[0]

_X32_SYSCALL_BIT = 0x40000000
# CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
_CLONE_NS_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000

# name -> (x86-64 number, AArch64 number); None where the syscall does not exist on that ABI.
# Numbers from the kernel's uapi headers (asm/unistd_64.h and asm-generic/unistd.h).
_DENY_EPERM: dict[str, tuple[int | None, int | None]] = {
    # namespaces and mounts
    "unshare": (272, 97),
    "setns": (308, 268),
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "chroot": (161, 51),
    "open_tree": (428, 428),
    "move_mount": (429, 429),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fspick": (433, 433),
    "mount_setattr": (442, 442),
    # tracing and other processes' memory
    "ptrace": (101, 117),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "process_madvise": (440, 440),
    "pidfd_getfd": (438, 438),
    "kcmp": (312, 272),
    "perf_event_open": (298, 241),
    "bpf": (321, 280),
    "userfaultfd": (323, 282),
    "fanotify_init": (300, 262),
    # keyrings and file handles
    "add_key": (248, 217),
    "request_key": (249, 218),
    "keyctl": (250, 219),
    "name_to_handle_at": (303, 264),
    "open_by_handle_at": (304, 265),
    # io_uring (large, separately audited surface)
    "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
    # the machine itself
    "init_module": (175, 105),
    "finit_module": (313, 273),
    "delete_module": (176, 106),
    "kexec_load": (246, 104),
    "kexec_file_load": (320, 294),
    "reboot": (169, 142),
    "swapon": (167, 224),
    "swapoff": (168, 225),
    "acct": (163, 89),
    "settimeofday": (164, 170),
    "clock_settime": (227, 112),
    "clock_adjtime": (305, 266),
    "adjtimex": (159, 171),
    "sethostname": (170, 161),
    "setdomainname": (171, 162),
    "syslog": (103, 116),
    "quotactl": (179, 60),
    "quotactl_fd": (443, 443),
    "vhangup": (153, 58),
    "lookup_dcookie": (212, 18),
    "iopl": (172, None),
    "ioperm": (173, None),
    "uselib": (134, None),
}
_CLONE = (56, 220)
_CLONE3 = (435, 435)

# machine -> (AUDIT_ARCH_* value, index into the number tuples)
_ARCHES: dict[str, tuple[int, int]] = {
    "x86_64": (62 | 0x80000000 | 0x40000000, 0),
    "aarch64": (183 | 0x80000000 | 0x40000000, 1),
}
SUPPORTED_MACHINES = tuple(_ARCHES)


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def denied_syscalls() -> tuple[str, ...]:
    """Names of the syscalls the filter refuses outright (``clone`` is refused only with namespace flags)."""
    return (*sorted(_DENY_EPERM), "clone3")


def build_filter(machine: str | None = None) -> bytes:
    """The filter as raw ``struct sock_filter`` records, ready for ``bwrap --seccomp FD``."""
    machine = machine or platform.machine()
    if machine not in _ARCHES:
        raise ValueError(f"no seccomp syscall table for machine {machine!r}")
    audit_arch, col = _ARCHES[machine]
    eperm = _RET_ERRNO | errno.EPERM
    prog = [
        _insn(_LD_W_ABS, _OFF_ARCH),
        _insn(_JEQ_K, audit_arch, jt=1, jf=0),
        _insn(_RET_K, _RET_KILL_PROCESS),
        _insn(_LD_W_ABS, _OFF_NR),
    ]
    if machine == "x86_64":  # x32 ABI numbers carry bit 30: refuse the whole ABI
        prog += [_insn(_JGE_K, _X32_SYSCALL_BIT, jt=0, jf=1), _insn(_RET_K, _RET_KILL_PROCESS)]
    for numbers in _DENY_EPERM.values():
        nr = numbers[col]
        if nr is not None:
            prog += [_insn(_JEQ_K, nr, jt=0, jf=1), _insn(_RET_K, eperm)]
    prog += [_insn(_JEQ_K, _CLONE3[col], jt=0, jf=1), _insn(_RET_K, _RET_ERRNO | errno.ENOSYS)]
    # clone: allowed unless a namespace flag is set (the load clobbers A, so this block comes last).
    prog += [
        _insn(_JEQ_K, _CLONE[col], jt=0, jf=3),
        _insn(_LD_W_ABS, _OFF_ARG0_LO),
        _insn(_JSET_K, _CLONE_NS_FLAGS, jt=0, jf=1),
        _insn(_RET_K, eperm),
        _insn(_RET_K, _RET_ALLOW),
    ]
    return b"".join(prog)
