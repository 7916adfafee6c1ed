"""Differential privacy in one place: every noise sampler, every accountant and every conversion of Veilbox.

- `samplers`: `DiscreteLaplace` (OpenDP's exact discrete Laplace on integers, calibrated so OpenDP's privacy
  map certifies the ε it is charged: SQL, training metrics, PSI counts) and `DiscreteGaussian` (OpenDP's exact
  discrete Gaussian: each holder's noise share in federated training).
- `budget`: exact `Fraction` arithmetic for a query's ε and δ (`as_fraction`) and basic sequential composition
  (`split_epsilon`).
- `zcdp`: the distributed discrete Gaussian's zCDP bound (`ddg_rho`) and the one zCDP → (ε, δ) conversion
  (`zcdp_epsilon`, `zcdp_delta`, `max_rho`).
- `prv`: DP-SGD accounting with Opacus' PRV accountant (`epsilon_for`, `noise_multiplier_for`); Opacus and
  torch load on first use only.

The (ε, δ) the ledger charges is `policies.Budget` (exact, basic composition), below the sandbox. Nothing draws
noise outside `samplers` except Opacus' optimizer in DP-SGD (`sandbox.train.runner`); `tests/unit/sandbox/dp` forbids
`random` and `numpy` here and pins that OpenDP's samplers are constructed in `samplers` only.
"""

from sandbox.dp.budget import as_fraction, split_epsilon
from sandbox.dp.samplers import DiscreteGaussian, DiscreteLaplace

__all__ = ["DiscreteGaussian", "DiscreteLaplace", "as_fraction", "split_epsilon"]
