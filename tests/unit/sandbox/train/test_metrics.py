"""Held-out metrics: the right counts go into the noise, and AUC/accuracy follow from the noisy counts."""

from __future__ import annotations

import numpy as np
import pytest

from sandbox.train.metrics import LOGIT_EDGES, release_metrics


def test_exact_at_huge_epsilon():
    logits = np.array([-5.0, -2.5, -0.5, 0.5, 2.5, 5.0, -0.2, 0.3], dtype=np.float32)
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 0], dtype=np.float32)
    m = release_metrics(logits, labels, 1e7)
    assert m.confusion == {"tp": 3, "fp": 1, "tn": 3, "fn": 1}
    assert m.held_out_rows == 8 and m.accuracy == 0.75
    assert len(m.score_histogram.positive) == len(LOGIT_EDGES) + 1
    assert sum(m.score_histogram.positive) == 4 and sum(m.score_histogram.negative) == 4
    # Binned Mann–Whitney: pairs (pos, neg) ordered correctly, ties within a bin count 1/2.
    assert m.auc == pytest.approx(14 / 16)  # bins 4,6,7,3 (pos) vs 0,1,3,4 (neg): 3.5+4+4+2.5


def test_separable_scores_at_small_epsilon():
    rng_free = np.linspace(-4, 4, 20_000).astype(np.float32)  # deterministic, no generator needed
    labels = (rng_free > 0).astype(np.float32)
    m = release_metrics(rng_free, labels, 0.1)
    assert m.auc is not None and m.auc > 0.95
    assert m.accuracy is not None and m.accuracy > 0.97
    assert abs(m.held_out_rows - 20_000) < 400


def test_no_rows_still_releases_noise():
    m = release_metrics(np.zeros(0, np.float32), np.zeros(0, np.float32), 0.1)
    assert m.held_out_rows >= 0 and m.epsilon == 0.1
