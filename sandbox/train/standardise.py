"""DP feature standardisation: a noisy mean and spread per bounded numeric feature, paid from the training ε.

Why. The declaration-only encoding (`sandbox.train.encoding`) scales a bounded column by its declared bounds,
which are chosen to hold every legal value, not to fit the data: a monthly income declared on [0, 200 000]
whose values sit around 9 000 encodes to about −0.91 with a spread of 0.06. Gradient descent on such an input
is badly conditioned (its weight has to grow to ~18 and moves with the bias), so a fixed budget of noisy steps
ends far from the optimum whatever the noise. Training on standardised inputs ``(x − m) / s`` and folding the
affine map back into the first layer removes that, and the released model still reads the public encoding.

Mechanism (pure ε, ``ε_std`` from the plan). For the k scaled inputs of the training split, the vector of
fixed-point sums ``Σ round(x·K)`` and ``Σ round(x²·K)`` (K = 2¹⁶, each term in [−K, K] and [0, K]) has L1
sensitivity ``2·k·K`` under adding or removing one row; it is released once with OpenDP's discrete Laplace
(`sandbox.dp.DiscreteLaplace`, calibrated so its privacy map certifies ``ε_std``). From the noisy sums and the
*planned* training row count (public to the sandbox, like q): ``m = S₁ / N`` clamped to [−1, 1] and
``s = sqrt(S₂ / N − m²)`` clamped to [``MIN_SCALE``, 1]. Everything after the release is post-processing, so
the weights cost ``ε_std + ε_PRV ≤ ε`` by basic composition (the plan checks the sum exactly). One-hot inputs are
left as they are (m = 0, s = 1). With no scaled input nothing is released and ``ε_std`` goes unused.

The sums are exact integers, so they may be accumulated chunk by chunk (`fixed_point_sums`) and released once
(`release_standardisation`): the streaming runner does that in its first pass and releases the same vector.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sandbox.dp import DiscreteLaplace, as_fraction
from sandbox.train.encoding import FeatureEncoding, ScaledFeature

__all__ = ["FIXED_POINT", "MIN_SCALE", "Standardisation", "dp_standardisation", "fixed_point_sums",
           "release_standardisation"]

#: Fixed-point factor of the released sums (values in [−1, 1] are summed as integers in [−K, K]).
FIXED_POINT = 1 << 16
#: Floor on a noisy spread: a feature is never stretched by more than 1 / MIN_SCALE (= 50).
MIN_SCALE = 0.02


@dataclass(frozen=True)
class Standardisation:
    """Per-input centre ``mean`` and spread ``scale`` (float64[width]); identity (0, 1) for one-hot inputs."""

    mean: np.ndarray
    scale: np.ndarray
    scaled_inputs: int

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``(x − mean) / scale`` as float32 (a new array; ``x`` is left untouched)."""
        return ((x - self.mean) / self.scale).astype(np.float32)

    def fold(self, weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The first layer's (W', b') on raw inputs equivalent to (W, b) on standardised ones:
        ``W' = W / scale`` (column-wise), ``b' = b − W' · mean``."""
        w = weight / self.scale[None, :]
        return w, bias - w @ self.mean


def scaled_columns(encoding: FeatureEncoding) -> list[int]:
    """Input positions of the scaled (bounded numeric) features, in input order."""
    out, offset = [], 0
    for f in encoding.features:
        if isinstance(f, ScaledFeature):
            out.append(offset)
        offset += f.width
    return out


def fixed_point_sums(x: np.ndarray, encoding: FeatureEncoding) -> tuple[np.ndarray, np.ndarray]:
    """(``Σ round(x·K)``, ``Σ round(x²·K)``) over the rows of ``x`` (encoded rows) for each scaled input, as
    int64; sums of chunks add up to the sums of the whole split (the streaming runner's first pass)."""
    cols = scaled_columns(encoding)
    v = np.clip(x[:, cols].astype(np.float64), -1.0, 1.0)
    return (np.rint(v * FIXED_POINT).astype(np.int64).sum(axis=0),
            np.rint(v * v * FIXED_POINT).astype(np.int64).sum(axis=0))


def release_standardisation(s1: np.ndarray, s2: np.ndarray, encoding: FeatureEncoding, planned_rows: int,
                            epsilon: float) -> Standardisation:
    """The noisy mean and spread from the exact fixed-point sums of the whole training split (pure ε)."""
    width = encoding.width
    mean, scale = np.zeros(width), np.ones(width)
    cols = scaled_columns(encoding)
    if not cols or epsilon <= 0:
        return Standardisation(mean, scale, 0)
    k = len(cols)
    mech = DiscreteLaplace.calibrate(2 * k * FIXED_POINT, as_fraction(epsilon))
    noisy = np.asarray(mech.release([*s1.tolist(), *s2.tolist()]), dtype=np.float64)
    n = float(max(1, planned_rows)) * FIXED_POINT
    m = np.clip(noisy[:k] / n, -1.0, 1.0)
    var = noisy[k:] / n - m * m
    s = np.sqrt(np.clip(var, MIN_SCALE * MIN_SCALE, 1.0))
    mean[cols], scale[cols] = m, s
    return Standardisation(mean, scale, k)


def dp_standardisation(x: np.ndarray, encoding: FeatureEncoding, planned_rows: int,
                       epsilon: float) -> Standardisation:
    """Noisy per-input mean and spread of ``x`` (the encoded training split), spending ``epsilon`` (pure ε)."""
    if not scaled_columns(encoding) or epsilon <= 0:
        return Standardisation(np.zeros(encoding.width), np.ones(encoding.width), 0)
    s1, s2 = fixed_point_sums(x, encoding)
    return release_standardisation(s1, s2, encoding, planned_rows, epsilon)
