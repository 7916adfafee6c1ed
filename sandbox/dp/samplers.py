"""Every noise sampler of Veilbox: OpenDP's exact samplers on integers, drawn from the OS CSPRNG.

- `DiscreteLaplace` (the SQL engine, the training metrics and the PSI count): ``DiscreteLaplace.calibrate(Δ, ε)``
  returns a mechanism whose OpenDP privacy map certifies ``map(Δ) ≤ ε`` for vectors at L1 distance ``Δ`` (the
  scale starts at ``Δ/ε`` and is nudged up one float ulp at a time until OpenDP's conservatively rounded map
  agrees). ``release`` adds independent discrete Laplace noise to every coordinate of an integer vector, so
  neighbouring inputs (L1 distance ≤ Δ) give ε-indistinguishable outputs.
- `DiscreteGaussian` (each holder's share of the noise in federated training, `sandbox.federated`): independent
  N_Z(0, σ²) draws on every coordinate of an integer vector (OpenDP ``make_gaussian`` over ``i64`` with the L2
  metric). Its privacy is stated by the caller's zCDP bound (`sandbox.dp.zcdp.ddg_rho`), never by this module.

No floating-point Laplace or Gaussian is ever sampled and nothing here uses ``random`` or ``numpy.random``:
OpenDP draws from the operating system's CSPRNG and samples exactly (Canonne, Kamath & Steinke 2020). The
Gaussian noise of DP-SGD is the one exception, drawn inside Opacus' optimizer (`sandbox.train.runner`).

A Laplace scale above ``MAX_SCALE`` (2**52: beyond it draws approach the 64-bit range OpenDP saturates at, and
the scale stops being an exact float) is refused with ``ValueError`` before any float is formed, so an ε such as
``5e-324`` is an invalid request, never an ``OverflowError``.

Accuracy statements are analytic: ``accuracy(alpha)`` is OpenDP's tolerance ``a`` with ``P(|noise| ≥ a) ≤ alpha``
and ``std`` is the closed-form standard deviation of the discrete Laplace distribution.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import opendp.prelude as dp

__all__ = ["MAX_SCALE", "DiscreteGaussian", "DiscreteLaplace"]

MAX_SCALE = Fraction(2**52)

dp.enable_features("contrib")

_SPACE: Any = None


def _space() -> Any:
    global _SPACE
    if _SPACE is None:
        _SPACE = (dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64"))
    return _SPACE


@functools.lru_cache(maxsize=512)
def _measurement(scale: float) -> Any:
    """OpenDP's discrete Laplace on ``i64`` vectors under the L1 metric, at ``scale``."""
    domain, metric = _space()
    return dp.m.make_laplace(input_domain=domain, input_metric=metric, scale=scale)


@dataclass(frozen=True)
class DiscreteLaplace:
    """Discrete Laplace noise for one integer vector with L1 sensitivity ``sensitivity``, costing ``epsilon``."""

    sensitivity: int
    epsilon: Fraction
    scale: float

    @classmethod
    def calibrate(cls, sensitivity: int, epsilon: Fraction) -> DiscreteLaplace:
        """The mechanism of scale ``sensitivity / epsilon``; `ValueError` for a bad input or a scale above 2**52."""
        if sensitivity < 1:
            raise ValueError("sensitivity must be a positive integer")
        if epsilon <= 0:
            raise ValueError("epsilon must be positive")
        exact = Fraction(sensitivity) / Fraction(epsilon)
        if exact > MAX_SCALE:
            raise ValueError("epsilon is too small for this sensitivity (the noise scale would exceed 2**52)")
        scale = float(exact)
        for _ in range(64):
            if Fraction(_measurement(scale).map(sensitivity)) <= epsilon:
                return cls(sensitivity, epsilon, scale)
            scale = math.nextafter(scale, math.inf)
        raise ValueError("could not calibrate the noise scale")  # pragma: no cover - OpenDP rounds by ulps

    def release(self, values: Sequence[int]) -> list[int]:
        """``values`` plus independent discrete Laplace noise of this scale on every coordinate."""
        if not values:
            return []
        out = _measurement(self.scale)([int(v) for v in values])
        return [int(v) for v in out]

    def noise(self, n: int) -> list[int]:
        """``n`` independent noise draws: the mechanism applied to zeros (added exactly, in Python ints).

        ``release(v) == [x + e for x, e in zip(v, noise(len(v)))]`` in distribution; drawing the noise apart
        lets a caller sample while the engine is still computing (the noise never depends on the data).
        """
        return self.release([0] * n)

    def accuracy(self, alpha: float = 0.05) -> float:
        """Half-width ``a`` of a ``1 - alpha`` interval: ``P(|noise| ≥ a) ≤ alpha``."""
        return float(dp.discrete_laplacian_scale_to_accuracy(self.scale, alpha))

    @property
    def std(self) -> float:
        """Standard deviation of the noise: sqrt(2·e^(-1/s)) / (1 - e^(-1/s))."""
        q = math.exp(-1.0 / self.scale)
        return math.sqrt(2.0 * q) / (1.0 - q)


@functools.lru_cache(maxsize=64)
def _gaussian(scale: float) -> Any:
    """OpenDP's discrete Gaussian on ``i64`` vectors under the L2 metric, at ``scale``."""
    domain = dp.vector_domain(dp.atom_domain(T="i64"))
    return dp.m.make_gaussian(input_domain=domain, input_metric=dp.l2_distance(T="i64"), scale=scale)


@dataclass(frozen=True)
class DiscreteGaussian:
    """Independent N_Z(0, ``scale``²) noise on every coordinate of an integer vector (OpenDP's exact sampler)."""

    scale: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError("scale must be a positive number")

    def release(self, values: Sequence[int]) -> list[int]:
        """``values`` plus independent discrete Gaussian noise of this scale on every coordinate."""
        if not values:
            return []
        out = _gaussian(float(self.scale))([int(v) for v in values])
        return [int(v) for v in out]

    def noise(self, n: int) -> list[int]:
        """``n`` independent draws of N_Z(0, scale²): the mechanism applied to zeros."""
        return self.release([0] * n)
