"""Fixed-point encoding of float vectors into the ring Z_{2^m}, and decoding of a sum of them.

A value is clipped to ``[−clip, clip]``, multiplied by ``scale`` and rounded to an integer ``q``
(deterministically to nearest, or stochastically — up with probability equal to the fractional part,
coins from the OS CSPRNG, so the rounding is unbiased); ``q`` is stored in two's complement modulo
``2^m``. ``scale`` is chosen so that the sum of up to ``max_clients`` encodings never leaves
``(−2^(m−1), 2^(m−1))``: the modular sum of the encodings then *is* the integer sum, and `decode_sum`
recovers it by reading the total as a signed m-bit number — wraparound of the masked arithmetic is
harmless. Error of a decoded sum of ``c`` clients, per coordinate, against the sum of clipped inputs:
at most ``c / (2·scale)`` (nearest) or ``c / scale`` (stochastic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mpc.secagg.prg import random_unit


@dataclass(frozen=True)
class FixedPoint:
    """The encoding shared by all clients of a round: clip bound, client count bound and modulus."""

    clip: float
    max_clients: int
    modulus_bits: int = 32

    def __post_init__(self) -> None:
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise ValueError("clip must be a positive finite number")
        if self.max_clients < 1:
            raise ValueError("max_clients must be at least 1")
        if not 2 <= self.modulus_bits <= 32:
            raise ValueError("modulus_bits must lie in [2, 32]")
        if self.scale <= 0:
            raise ValueError("modulus too small for this many clients")

    @property
    def scale(self) -> float:
        """Integer steps per unit: ``max_clients · (clip·scale + 1) ≤ 2^(m−1) − 1``."""
        half: int = 2 ** (self.modulus_bits - 1)  # modulus_bits >= 2, so an int
        return ((half - 1) / self.max_clients - 1) / self.clip

    def encode(self, values: ArrayLike, *, stochastic: bool = True) -> NDArray[np.uint32]:
        """One client's vector as words in ``[0, 2^m)``; `ValueError` on NaN or infinity."""
        x = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError("values must be finite")
        scaled = np.clip(x, -self.clip, self.clip) * self.scale
        if stochastic:
            low = np.floor(scaled)
            q = low + (random_unit(scaled.size).reshape(scaled.shape) < scaled - low)
        else:
            q = np.rint(scaled)
        mask = np.int64((1 << self.modulus_bits) - 1)
        return (q.astype(np.int64) & mask).astype(np.uint32)

    def decode_sum(self, total: ArrayLike) -> NDArray[np.float64]:
        """The float sum behind the modular sum of at most ``max_clients`` encodings."""
        words = np.asarray(total).astype(np.int64) & ((1 << self.modulus_bits) - 1)
        half = 1 << (self.modulus_bits - 1)
        signed = np.where(words >= half, words - (1 << self.modulus_bits), words)
        return signed.astype(np.float64) / self.scale

    def error_bound(self, count: int, *, stochastic: bool = True) -> float:
        """Largest per-coordinate error of a decoded sum of ``count`` clients against their clipped sum."""
        return count * (1.0 if stochastic else 0.5) / self.scale


def quantize(
    values: ArrayLike, clip: float, max_clients: int, modulus_bits: int = 32, *, stochastic: bool = True
) -> NDArray[np.uint32]:
    """`FixedPoint(clip, max_clients, modulus_bits).encode(values)`."""
    return FixedPoint(clip, max_clients, modulus_bits).encode(values, stochastic=stochastic)


def dequantize_sum(total: ArrayLike, clip: float, max_clients: int, modulus_bits: int = 32) -> NDArray[np.float64]:
    """`FixedPoint(clip, max_clients, modulus_bits).decode_sum(total)`."""
    return FixedPoint(clip, max_clients, modulus_bits).decode_sum(total)
