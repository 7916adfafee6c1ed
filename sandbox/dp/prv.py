"""DP-SGD accounting: Opacus' accountants for T Poisson-subsampled Gaussian steps (σ, q), and σ calibration.

- `epsilon_for(σ, q, T, δ, "prv")`: ε by Opacus' PRV accountant (Gopi, Lee & Wutschitz 2021), the value
  DP-SGD calibrates to and charges; ``"rdp"`` gives the RDP accountant's (looser) ε for comparison on the card.
- `noise_multiplier_for(ε, δ, q, T, tolerance)`: the smallest σ (to ``tolerance`` in ε) for which the PRV
  accountant bounds the T-fold composition by (ε, δ) (Opacus ``get_noise_multiplier``); ``ValueError`` when no
  σ reaches it.

Used by the training plan (`sandbox.train.plan`, before any data is read) and by the runner, which states the
ε of the steps it actually took (`sandbox.train.runner`). Opacus (and with it torch) is imported on first use
only, so importing `sandbox.dp` never loads torch.
"""

from __future__ import annotations

import functools
import warnings
from typing import Literal

__all__ = ["Accountant", "epsilon_for", "noise_multiplier_for"]

Accountant = Literal["prv", "rdp"]


def epsilon_for(
    noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: Accountant = "prv"
) -> float:
    """ε of ``steps`` Poisson-subsampled Gaussian steps (σ, q) at δ, by Opacus' PRV or RDP accountant."""
    from opacus.accountants import PRVAccountant, RDPAccountant

    acc: PRVAccountant | RDPAccountant = PRVAccountant() if accountant == "prv" else RDPAccountant()
    acc.history = [(noise_multiplier, sample_rate, steps)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RDP: "optimal order is the largest alpha" (a looser bound, still valid)
        return float(acc.get_epsilon(delta=delta))


@functools.lru_cache(maxsize=256)
def noise_multiplier_for(epsilon: float, delta: float, sample_rate: float, steps: int, tolerance: float) -> float:
    """The smallest σ (to ``tolerance`` in ε) whose ``steps`` PRV-accounted steps at rate ``sample_rate`` stay
    within (``epsilon``, ``delta``)."""
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(
            get_noise_multiplier(
                target_epsilon=epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant="prv",
                epsilon_tolerance=tolerance,
            )
        )
