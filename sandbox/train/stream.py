"""Streaming DP-SGD inputs: Poisson batches drawn by geometric skips and fetched in passes over the engine.

Above `sandbox.train._data.STREAM_ABOVE_ROWS` registered rows (a threshold on the public row count, never on
the data's content) the runner does not hold the encoded training split. It keeps a locked engine connection
(`sandbox.train._data.TrainingStream`) and makes *passes* over the training side of the split, each serving a
block of consecutive steps:

1. Before a pass, the block's length ``S`` is fixed from the plan (``S·B`` buffered rows at most about
   ``ResourceLimits.stream_buffer_rows``); nothing about the data enters it.
2. During the pass, the training rows arrive chunk by chunk in the engine's order. Row ``i`` of the pass and
   step ``s`` of the block form the cell ``i·S + s`` of a row-major grid. Every cell is an independent
   Bernoulli(q) coin; the coins that come up are found by geometric skips: the gap to the next selected cell
   is ``G = ⌊ln(1 − u) / ln(1 − q)⌋ + 1`` for a float64 uniform ``u`` from a CPU ``torch.Generator`` reseeded
   with 63 bits of OS entropy (``secrets``) for every chunk, so ``P(G > k) = (1 − q)^k`` up to floating-point
   rounding (the same order as the in-memory sampler's ``rand < q``, exact to 2⁻⁵³). The skip process is
   memoryless, so carrying the last selected cell over a chunk boundary changes nothing. Only the selected
   rows are encoded and kept: ``S·B`` rows in expectation, never the split.
3. After the pass the kept rows are grouped by step and the block's batches are handed to the optimizer in
   order. Every row joins every step independently with probability q, as in the in-memory sampler: the
   accountant, the plan's (σ, q, T) and the constant gradient denominator are unchanged.

The first pass also accumulates the fixed-point sums of the standardisation (`sandbox.train.standardise`)
over every training row, so the noisy statistics cost no extra pass. The held-out evaluation is a last pass
over the held-out side that scores each chunk and keeps only the metrics' counts
(`sandbox.train.metrics.held_out_counts`).

Cost: a pass reads the needed columns of the file once; its per-step share is a pass's read time divided by
``S``. Sampling costs O(B) per step instead of the in-memory sampler's O(rows).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["GridSampler", "PassBatches", "steps_per_pass"]


def _os_seed() -> int:
    return secrets.randbits(63)


def steps_per_pass(batch_size: int, buffer_rows: int, total_steps: int) -> int:
    """Steps one pass serves: ``buffer_rows // batch_size`` (at least 1, at most the steps left). Public
    inputs only (the spec's batch size, a constant, the plan's step count)."""
    return max(1, min(total_steps, buffer_rows // max(1, batch_size)))


class GridSampler:
    """Selected cells of a row-major (rows × ``steps``) grid, each cell independently with probability ``q``.

    `take(rows)` consumes the next ``rows`` rows of the grid and returns, for every selected cell among them,
    its row (relative to those rows) and its step; the rows arrive in chunks whose sizes may depend on the
    data, which the skip process does not see.
    """

    def __init__(self, q: float, steps: int, generator: torch.Generator, draw: int = 4096) -> None:
        if not 0.0 < q <= 1.0:
            raise ValueError("sample rate out of (0, 1]")
        self._log1mq = float(np.log1p(-q)) if q < 1.0 else -np.inf
        self._steps = steps
        self._gen = generator
        self._draw = draw
        self._base = 0  # first cell of the next chunk
        self._pending = np.zeros(0, np.int64)  # selected cells at or after ``_base``, ascending
        self._last = -1  # last selected cell drawn so far

    def _more(self, until: int) -> None:
        """Draw skips until a selected cell at or beyond ``until`` exists."""
        parts = [self._pending]
        last = self._last
        while last < until:
            self._gen.manual_seed(_os_seed())
            u = torch.rand(self._draw, generator=self._gen, dtype=torch.float64).numpy()
            if self._log1mq == -np.inf:  # q = 1: every cell
                gaps = np.ones(self._draw, np.int64)
            else:
                # 1 − u ∈ (0, 1]: G = ⌊ln(1 − u) / ln(1 − q)⌋ + 1 ≥ 1, P(G > k) = (1 − q)^k
                g = np.floor(np.log1p(-u) / self._log1mq) + 1.0
                gaps = np.minimum(g, float(1 << 62)).astype(np.int64)
            cells = last + np.cumsum(gaps)
            parts.append(cells)
            last = int(cells[-1])
        self._pending = np.concatenate(parts)
        self._last = last

    def take(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """(row within these ``rows``, step) of every selected cell of the next ``rows`` rows."""
        end = self._base + rows * self._steps
        if self._last < end:
            self._more(end)
        cut = int(np.searchsorted(self._pending, end, side="left"))
        mine, self._pending = self._pending[:cut], self._pending[cut:]
        rel = mine - self._base
        self._base = end
        return rel // self._steps, rel % self._steps


@dataclass(frozen=True)
class PassBatches:
    """The encoded rows one pass selected, grouped by step: batch ``s`` is ``x[starts[s]:starts[s + 1]]``."""

    x: np.ndarray
    y: np.ndarray
    starts: np.ndarray

    @classmethod
    def group(cls, xs: list[np.ndarray], ys: list[np.ndarray], steps: list[np.ndarray], width: int,
              block: int) -> PassBatches:
        """Concatenate the per-chunk selections and order them by step (stable)."""
        s = np.concatenate(steps) if steps else np.zeros(0, np.int64)
        order = np.argsort(s, kind="stable")
        x = np.concatenate(xs)[order] if xs else np.zeros((0, width), np.float32)
        y = np.concatenate(ys)[order] if ys else np.zeros(0, np.float32)
        starts = np.searchsorted(s[order], np.arange(block + 1), side="left")
        return cls(np.ascontiguousarray(x), y, starts)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for a, b in zip(self.starts[:-1], self.starts[1:], strict=True):
            yield self.x[a:b], self.y[a:b]
