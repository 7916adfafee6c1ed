"""Every random number of `mpc.he` comes from here, and all of it from the OS CSPRNG.

Floats are built from ``os.urandom`` words (53 random bits each); integers from ``os.urandom`` words by
exact rejection sampling or exact bit slicing (no modulo bias), vectorised with NumPy. Nothing in `mpc.he`
uses `random`, `numpy.random` or MT19937; a test enforces that. SEAL's own encryption randomness (the
``u, e`` of a public-key encryption) comes from SEAL's Blake2/SHAKE PRNG, seeded from the OS.
"""

from __future__ import annotations

import math
import os

import numpy as np
from numpy.typing import NDArray

_U64 = np.dtype("<u8")


def unit_floats(count: int) -> NDArray[np.float64]:
    """``count`` uniform floats in ``(0, 1]`` with 53 random bits each (never exactly 0: safe under log)."""
    words = np.frombuffer(os.urandom(8 * count), dtype=_U64)
    return ((words >> np.uint64(11)).astype(np.float64) + 1.0) * (2.0**-53)


def standard_normal(count: int) -> NDArray[np.float64]:
    """``count`` independent N(0, 1) samples (Box–Muller over CSPRNG uniforms)."""
    pairs = (count + 1) // 2
    radius = np.sqrt(-2.0 * np.log(unit_floats(pairs)))
    angle = 2.0 * math.pi * unit_floats(pairs)
    return np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])[:count]


def integers_below(bounds: NDArray[np.int64]) -> NDArray[np.int64]:
    """One exact uniform integer in ``[0, b)`` for each ``1 ≤ b < 2^62`` of ``bounds``.

    Rejection sampling on 64-bit words: a word w is kept when ``w < ⌊2^64/b⌋·b``, so ``w mod b`` is exactly
    uniform; a draw is rejected with probability below b/2^64 and redrawn.
    """
    limits = bounds.astype(np.uint64)
    if limits.size and (int(limits.min()) < 1 or int(limits.max()) >= 2**62):
        raise ValueError("bounds must lie in [1, 2^62)")
    top = np.uint64(2**64 - 1)
    ceiling = (top - (top % limits + np.uint64(1)) % limits)  # largest multiple of b, minus one
    out = np.empty(limits.shape, dtype=np.uint64)
    todo = np.arange(limits.size)
    while todo.size:
        words = np.frombuffer(os.urandom(8 * todo.size), dtype=_U64)
        ok = words <= ceiling[todo]
        out[todo[ok]] = words[ok] % limits[todo[ok]]
        todo = todo[~ok]
    return out.astype(np.int64)


def signed_bits(count: int, bits: int) -> NDArray[np.uint64]:
    """``count`` exact uniform integers in ``[-2^bits, 2^bits)``, as 16-bit limbs (little-endian, offset 2^bits).

    Returns an array of shape ``(limbs, count)`` holding ``U = value + 2^bits`` ∈ [0, 2^(bits+1)) in base 2^16;
    `residues` turns it into residues modulo word-size primes without Python-level big integers.
    """
    total_bits = bits + 1
    limbs = (total_bits + 15) // 16
    raw = np.frombuffer(os.urandom(2 * limbs * count), dtype="<u2").reshape(limbs, count).astype(np.uint64)
    spare = limbs * 16 - total_bits
    if spare:
        raw[-1] &= np.uint64((1 << (16 - spare)) - 1)
    return raw


def residues(limbs: NDArray[np.uint64], bits: int, prime: int) -> NDArray[np.uint64]:
    """``(U − 2^bits) mod prime`` for the limb representation of `signed_bits` (any prime < 2^62)."""
    q = np.uint64(prime)
    if prime < 2**44 and limbs.shape[0] <= 15:  # every limb·weight < 2^60, their sum < 2^64
        weights = np.array([pow(2, 16 * i, prime) for i in range(limbs.shape[0])], dtype=np.uint64)
        total = (weights[:, None] * limbs).sum(axis=0, dtype=np.uint64) % q
    else:  # 4-bit digits: digit·weight < 2^66 would overflow, so weights < 2^60 and reduce each step
        total = np.zeros(limbs.shape[1], dtype=np.uint64)
        for i in range(limbs.shape[0]):
            for nibble in range(4):
                digit = (limbs[i] >> np.uint64(4 * nibble)) & np.uint64(15)
                weight = np.uint64(pow(2, 16 * i + 4 * nibble, prime))
                total = (total + digit * weight % q) % q
    shifted: NDArray[np.uint64] = (total + q - np.uint64(pow(2, bits, prime))) % q
    return shifted


def log_uniform_integers(count: int, low: int, high: int) -> NDArray[np.int64]:
    """``count`` integers ``floor(2^U)`` with U uniform on ``[log2 low, log2(high + 1))``, clipped to [low, high].

    Requires ``2 ≤ low ≤ high < 2^52`` so every value is exact in a float64.
    """
    if not 2 <= low <= high < 2**52:
        raise ValueError("log-uniform range must satisfy 2 <= low <= high < 2^52")
    lo_exp, hi_exp = math.log2(low), math.log2(high + 1)
    exponents = lo_exp + (hi_exp - lo_exp) * (1.0 - unit_floats(count))
    values = np.floor(np.exp2(exponents))
    return np.clip(values, low, high).astype(np.int64)
