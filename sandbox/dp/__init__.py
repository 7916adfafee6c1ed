"""Differential-privacy building blocks of the sandbox.

- `laplace`: `DiscreteLaplace`, the one noise source (OpenDP's exact discrete Laplace on integers),
  calibrated so OpenDP's privacy map certifies the ε it is charged.
- `budget`: exact `Fraction` arithmetic for a query's ε and δ (`as_fraction`, `split_epsilon`).

Nothing in the sandbox draws noise anywhere else; `tests/sandbox/dp` forbids `random` and `numpy.random`.
"""

from sandbox.dp.budget import as_fraction, split_epsilon
from sandbox.dp.laplace import DiscreteLaplace

__all__ = ["DiscreteLaplace", "as_fraction", "split_epsilon"]
