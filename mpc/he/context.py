"""Validation of the public TenSEAL context a bank sends: only public, standard-secure parameters pass.

Guarantee: a context returned by `load_public_context` deserialised within the byte limit; holds a public
key and **no secret key**; uses the expected scheme; has a polynomial degree from the allowed set; has a
total coefficient modulus within the HomomorphicEncryption.org 128-bit classical bound for its degree
(checked twice: against our copy of the table and by SEAL itself via ``SEALContext(…, TC128)``); has the
multiplicative depth the operation needs; has Galois keys for every power-of-two rotation when asked; uses
a CKKS scale in ``[2^20, 2^60]`` or a batching-friendly BFV plain modulus. Anything else raises
``MpcError("CIPHERTEXT_INVALID", …)``.

What is introspected and how: N, the scheme, the chain of levels and the product bit count per level come
from TenSEAL's ``seal_context()``; the individual primes and the BFV plain modulus are not exposed by
TenSEAL, so they are read from SEAL's own serialisation of the parameters (see `_seal`). What cannot be
checked without the secret key: that the public key and Galois keys were generated honestly (secret from
the ternary distribution, errors from SEAL's Gaussian) and belong together. A bank that crafts them harms
the correctness of its own results, but may also weaken the noise-flooding argument (see docs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import tenseal as ts

from mpc.he import _seal
from mpc.he._payload import ciphertext_invalid, decode_b64, invalid_request

Scheme = Literal["ckks", "bfv"]

#: Largest total coefficient-modulus bit count for 128-bit classical security with a ternary secret
#: (HomomorphicEncryption.org security standard, Table 1; the same numbers SEAL enforces).
MAX_COEFF_MODULUS_BITS_128: dict[int, int] = {
    1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881,
}

MIN_CKKS_SCALE_BITS = 20
MAX_CKKS_SCALE_BITS = 60


@dataclass(frozen=True)
class ContextLimits:
    """Server-side limits on what a bank's context may be. Defaults suit N = 8192 and 16384."""

    max_bytes: int = 64 * 2**20
    allowed_degrees: frozenset[int] = frozenset({8192, 16384})


DEFAULT_CONTEXT_LIMITS = ContextLimits()


@dataclass(frozen=True)
class ContextInfo:
    """The introspected, validated parameters of a public context."""

    scheme: Scheme
    poly_modulus_degree: int
    #: Key-level primes (the last one is SEAL's special key-switching prime when there are several).
    primes: tuple[int, ...]
    #: Bit count of the product of ``primes``: the quantity the security standard bounds.
    total_coeff_modulus_bits: int
    #: Primes a fresh ciphertext lives under (the first data level).
    data_primes: tuple[int, ...]
    #: Rescalings (CKKS) / modulus switches available below the first data level.
    levels: int
    plain_modulus: int | None
    global_scale: float | None
    has_galois_keys: bool
    serialized_bytes: int
    first_parms_id: tuple[int, ...]

    @property
    def slot_count(self) -> int:
        """Values per ciphertext: N/2 complex slots for CKKS, N integer slots for BFV."""
        return self.poly_modulus_degree // 2 if self.scheme == "ckks" else self.poly_modulus_degree


@dataclass(frozen=True)
class PublicContext:
    """A validated public context: the TenSEAL object plus what we learned about it."""

    info: ContextInfo
    tenseal: ts.Context = field(repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


def security_violations(degree: int, total_bits: int) -> list[str]:
    """Why ``(N, log2 q)`` misses 128-bit classical security, or ``[]``."""
    bound = MAX_COEFF_MODULUS_BITS_128.get(degree)
    if bound is None:
        return [f"polynomial degree {degree} is not a power of two in [1024, 32768]"]
    if total_bits > bound:
        return [f"coefficient modulus of {total_bits} bits exceeds {bound} bits, the 128-bit bound for N={degree}"]
    return []


def galois_elements(degree: int) -> list[int]:
    """SEAL Galois elements of the rotations by 1, 2, 4, …, N/4 slots (generator 3 modulo 2N)."""
    two_n = 2 * degree
    return [pow(3, 1 << k, two_n) for k in range(int(math.log2(degree // 2)))]


def has_rotation_keys(context: ts.Context, degree: int) -> bool:
    """Whether ``context`` holds Galois keys for every power-of-two rotation (the row layout's sum)."""
    if not context.has_galois_keys():
        return False
    keys = context.galois_keys().data
    return all(keys.has_key(elt) for elt in galois_elements(degree))


def _introspect(context: ts.Context, raw_size: int, scheme: Scheme) -> tuple[ContextInfo, list[str]]:
    seal = context.data.seal_context()
    key_level = seal.key_context_data()
    first = seal.first_context_data()
    degree = int(key_level.parms().poly_modulus_degree())
    total_bits = int(key_level.total_coeff_modulus_bit_count())
    params = _seal.read_parameters(context)
    problems = security_violations(degree, total_bits)
    if sum(p.bit_length() for p in params.primes) > MAX_COEFF_MODULUS_BITS_128.get(degree, 0):
        problems.append("sum of prime sizes exceeds the 128-bit bound")
    if not params.compliant_128:
        problems.append(f"SEAL rejects the parameters at 128-bit security ({params.error})")
    data_count = len(params.primes) - 1 if len(params.primes) > 1 else 1
    info = ContextInfo(
        scheme=scheme,
        poly_modulus_degree=degree,
        primes=params.primes,
        total_coeff_modulus_bits=total_bits,
        data_primes=params.primes[:data_count],
        levels=int(first.chain_index()),
        plain_modulus=params.plain_modulus,
        global_scale=float(context.global_scale) if scheme == "ckks" else None,
        has_galois_keys=bool(context.has_galois_keys()),
        serialized_bytes=raw_size,
        first_parms_id=tuple(int(x) for x in first.parms_id()),
    )
    if scheme == "bfv" and not first.qualifiers().using_batching:
        problems.append("plain modulus does not allow batching (needs a prime p = 1 mod 2N)")
    return info, problems


def load_public_context(encoded: str | bytes, *, scheme: Scheme, min_levels: int = 0,
                        need_galois: bool = False,
                        limits: ContextLimits = DEFAULT_CONTEXT_LIMITS) -> PublicContext:
    """Decode, deserialise and validate a bank's base64 public context, or raise ``CIPHERTEXT_INVALID``.

    ``min_levels``: rescalings the computation needs (CKKS scoring needs 1). ``need_galois``: require
    rotation keys for every power-of-two step (row-layout scoring).
    """
    if scheme not in ("ckks", "bfv"):
        raise invalid_request("scheme must be 'ckks' or 'bfv'")
    raw = decode_b64(encoded, max_bytes=limits.max_bytes, what="context")
    try:
        context = ts.context_from(raw)
        secret = context.has_secret_key() or context.is_private()
        has_public = context.has_public_key()
        actual = _seal.scheme_of(context)
    except Exception:  # TenSEAL raises ValueError/RuntimeError/TypeError from C++ on any malformed input
        raise ciphertext_invalid("context does not deserialise as a TenSEAL context") from None
    if secret:
        raise ciphertext_invalid("context holds a secret key; send the public context only")
    if not has_public:
        raise ciphertext_invalid("context holds no public key")
    if actual != scheme:
        raise ciphertext_invalid(f"context uses {actual.upper()}, this operation needs {scheme.upper()}")
    try:
        info, problems = _introspect(context, len(raw), scheme)
    except Exception:
        raise ciphertext_invalid("context parameters cannot be introspected") from None
    if info.poly_modulus_degree not in limits.allowed_degrees:
        problems.append(f"polynomial degree {info.poly_modulus_degree} is not in the allowed set "
                        f"{sorted(limits.allowed_degrees)}")
    if info.levels < min_levels:
        problems.append(f"modulus chain allows {info.levels} rescaling(s), the operation needs {min_levels}")
    if need_galois and not has_rotation_keys(context, info.poly_modulus_degree):
        problems.append("Galois keys for power-of-two rotations are missing (required by the row layout)")
    if scheme == "ckks":
        scale = info.global_scale or 0.0
        if not (math.isfinite(scale) and 2.0**MIN_CKKS_SCALE_BITS <= scale <= 2.0**MAX_CKKS_SCALE_BITS):
            problems.append(f"CKKS scale must lie in [2^{MIN_CKKS_SCALE_BITS}, 2^{MAX_CKKS_SCALE_BITS}]")
    if problems:
        raise ciphertext_invalid("context rejected: " + "; ".join(problems))
    # The bank's automatic flags travel in the context; the server's computation fixes its own.
    context.auto_rescale = True
    context.auto_relin = True
    context.auto_mod_switch = True
    return PublicContext(info=info, tenseal=context)
