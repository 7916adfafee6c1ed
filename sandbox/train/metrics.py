"""Held-out AUC and accuracy, released with their own small ε (pure ε-DP, discrete Laplace from OpenDP).

The noise is the sandbox's one noise source, `sandbox.dp.DiscreteLaplace` (OpenDP's exact discrete Laplace
over the integers, bytes from a CSPRNG, calibrated so that OpenDP's privacy map certifies the ε charged).

The trained model scores the held-out rows (one unit in five, chosen by a hash of its id, never used for
training). Two count vectors are released, each with L1 sensitivity 1 under add/remove-one-unit (a held-out
unit falls in exactly one cell of each):

- the confusion counts at probability 0.5 (logit 0): ``tp, fp, tn, fn``, with ``ε_metrics / 2``;
- per-class histograms of the logit over fixed, data-independent bins (edges −3, −2, …, 3 plus two open
  ends: eight bins per class; few bins keep the noise mass small on a small held-out set), with
  ``ε_metrics / 2``.

Accuracy is ``(tp + tn) / (tp + fp + tn + fn)`` from the noisy confusion counts (clamped at zero); AUC is the
Mann–Whitney statistic of the two noisy histograms (ties within a bin count one half). Negative noisy
counts are clamped to zero first (this biases AUC slightly towards 0.5 on small held-out sets). Both are
post-processing of the noisy counts, which are released too so a reader can judge their noise. Total cost
``ε_metrics`` (sequential composition of the two halves); δ = 0.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict

from sandbox.dp import DiscreteLaplace, as_fraction

__all__ = ["LOGIT_EDGES", "MetricsRelease", "ScoreHistogram", "held_out_counts", "release_counts", "release_metrics"]

LOGIT_EDGES: tuple[float, ...] = tuple(float(e) for e in range(-3, 4))
NOISE = ("discrete Laplace (OpenDP make_laplace via sandbox.dp), scale 2/ε_metrics per count, "
         "L1 sensitivity 1 per vector")


class ScoreHistogram(BaseModel):
    """Noisy per-class counts of held-out logits over the fixed bins between ``logit_edges``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    logit_edges: tuple[float, ...]
    positive: tuple[int, ...]
    negative: tuple[int, ...]


class MetricsRelease(BaseModel):
    """Noisy held-out metrics: everything here is ε_metrics-DP with respect to the held-out units."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon: float
    split: str = "held-out 20% (ids with salted md5 ≡ 0 mod 5)"
    threshold: float = 0.5
    confusion: dict[str, int]
    held_out_rows: int
    accuracy: float | None
    auc: float | None
    score_histogram: ScoreHistogram
    noise: str = NOISE


def _auc(pos: list[int], neg: list[int]) -> float | None:
    p, n = sum(pos), sum(neg)
    if p <= 0 or n <= 0:
        return None
    below = 0
    acc = 0.0
    for cp, cn in zip(pos, neg, strict=True):
        acc += cp * (below + 0.5 * cn)
        below += cn
    return min(1.0, max(0.0, acc / (p * n)))


def held_out_counts(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact counts the release noises: confusion cells ``tp, fp, tn, fn`` and the per-class logit histogram
    (positives' bins, then negatives'), int64. Counts of chunks add up to the counts of the whole split."""
    pred = logits > 0
    pos = labels > 0.5
    cells = np.array([np.sum(pred & pos), np.sum(pred & ~pos), np.sum(~pred & ~pos), np.sum(~pred & pos)],
                     dtype=np.int64)
    bins = np.searchsorted(np.asarray(LOGIT_EDGES), logits, side="right")
    nb = len(LOGIT_EDGES) + 1
    hist = np.concatenate([np.bincount(bins[pos], minlength=nb), np.bincount(bins[~pos], minlength=nb)])
    return cells, hist.astype(np.int64)


def release_counts(cells: np.ndarray, hist: np.ndarray, epsilon: float) -> MetricsRelease:
    """DP release of accuracy and AUC from the exact held-out counts (`held_out_counts`, summed over chunks)."""
    nb = len(LOGIT_EDGES) + 1
    half = DiscreteLaplace.calibrate(1, as_fraction(epsilon) / 2)  # L1 sensitivity 1 per vector
    tp, fp, tn, fn = (max(0, v) for v in half.release([int(c) for c in cells]))
    noisy_hist = [max(0, v) for v in half.release([int(h) for h in hist])]
    hpos, hneg = noisy_hist[:nb], noisy_hist[nb:]
    total = tp + fp + tn + fn
    return MetricsRelease(
        epsilon=epsilon,
        confusion={"tp": tp, "fp": fp, "tn": tn, "fn": fn},
        held_out_rows=total,
        accuracy=(tp + tn) / total if total > 0 else None,
        auc=_auc(hpos, hneg),
        score_histogram=ScoreHistogram(logit_edges=LOGIT_EDGES, positive=tuple(hpos), negative=tuple(hneg)),
    )


def release_metrics(logits: np.ndarray, labels: np.ndarray, epsilon: float) -> MetricsRelease:
    """DP release of accuracy and AUC of ``logits`` against 0/1 ``labels`` (the held-out split)."""
    cells, hist = held_out_counts(logits, labels)
    return release_counts(cells, hist, epsilon)
