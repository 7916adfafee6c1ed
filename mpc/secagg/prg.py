"""Every random bit of secure aggregation comes from here.

Seeds, Shamir coefficients and rounding coins come from the operating system's CSPRNG (`os.urandom`,
`secrets`). Masks and the public neighbour permutation are expanded from a seed with AES-256-CTR keyed by
HKDF-SHA256(seed): one cipher call per mask yields ``4·L`` bytes, viewed as ``L`` little-endian uint32
words without a Python-level loop. Nothing here (or anywhere in `mpc.secagg`) uses `random`,
`numpy.random` or MT19937; a test enforces that.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from numpy.typing import NDArray

SEED_BYTES = 32
MASK_LABEL = b"veilbox/secagg/v1/prg/mask"
GRAPH_LABEL = b"veilbox/secagg/v1/prg/graph"

_WORD = np.dtype("<u4")
_U64 = np.dtype("<u8")


def random_seed() -> bytes:
    """A fresh 32-byte seed from the OS CSPRNG."""
    return os.urandom(SEED_BYTES)


def random_bytes(count: int) -> bytes:
    """``count`` bytes from the OS CSPRNG (AEAD nonces)."""
    return os.urandom(count)


def random_below(bound: int) -> int:
    """A uniform integer in ``[0, bound)`` from the OS CSPRNG."""
    return secrets.randbelow(bound)


def random_unit(count: int) -> NDArray[np.float64]:
    """``count`` uniform floats in ``[0, 1)`` with 53 random bits each, from the OS CSPRNG."""
    words = np.frombuffer(os.urandom(8 * count), dtype=_U64)
    return (words >> np.uint64(11)).astype(np.float64) * (2.0**-53)


@lru_cache(maxsize=8)
def _zeros(nbytes: int) -> bytes:
    return bytes(nbytes)


def keystream(seed: bytes, nbytes: int, *, label: bytes) -> bytes:
    """``nbytes`` of AES-256-CTR keystream under key and initial counter HKDF-SHA256(seed, info=label)."""
    if len(seed) < 16:
        raise ValueError("PRG seed must have at least 128 bits")
    material = HKDF(algorithm=hashes.SHA256(), length=48, salt=None, info=label).derive(seed)
    encryptor = Cipher(algorithms.AES(material[:32]), modes.CTR(material[32:])).encryptor()
    return encryptor.update(_zeros(nbytes)) + encryptor.finalize()


def expand(seed: bytes, length: int, modulus_bits: int = 32, *, label: bytes = MASK_LABEL) -> NDArray[np.uint32]:
    """The mask PRG(seed): ``length`` words uniform modulo ``2**modulus_bits`` (read-only array)."""
    words = np.frombuffer(keystream(seed, 4 * length, label=label), dtype=_WORD)
    if modulus_bits < 32:
        words = words & np.uint32((1 << modulus_bits) - 1)
    return words.astype(np.uint32, copy=False)


def permutation(seed: bytes, count: int, *, label: bytes = GRAPH_LABEL) -> list[int]:
    """A uniform permutation of ``range(count)`` from a public seed (Fisher–Yates, rejection sampling)."""
    order = list(range(count))
    draws_needed = max(2 * count, 16)
    draws = np.frombuffer(keystream(seed, 8 * draws_needed, label=label), dtype=_U64).tolist()
    cursor = 0
    for i in range(count - 1, 0, -1):
        span = i + 1
        limit = (1 << 64) - ((1 << 64) % span)
        while True:
            if cursor == len(draws):  # astronomically rare: extend the same stream deterministically
                draws_needed *= 2
                draws = np.frombuffer(keystream(seed, 8 * draws_needed, label=label), dtype=_U64).tolist()
            value = int(draws[cursor])
            cursor += 1
            if value < limit:
                break
        j = value % span
        order[i], order[j] = order[j], order[i]
    return order
