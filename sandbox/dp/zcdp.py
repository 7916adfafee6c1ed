"""Zero-concentrated DP (Bun & Steinke 2016): one mechanism bound, additive composition, and THE conversion to
(ε, δ).

- `ddg_rho`: ρ of the distributed discrete Gaussian — the sum of ``summands`` independent N_Z(0, σ²)^dim draws
  added to an integer vector of L2 sensitivity Δ (Kairouz, Liu & Steinke, *The Distributed Discrete Gaussian
  Mechanism*, ICML 2021, Prop. 14): ``ρ = ½(Δ/(√m·σ) + τ_m·√dim)²`` with
  ``τ_m = 10·Σ_{k=1}^{m−1} exp(−2π²σ²·k/(k+1))``; it needs σ ≥ ½.
- Composition: ρ-costs add up, also adaptively (round r's input may depend on earlier releases): R rounds of
  ρ each cost R·ρ.
- Conversion: `zcdp_delta` is the smallest δ for which ρ-zCDP implies (ε, δ)-DP (Canonne, Kamath & Steinke 2020,
  Cor. 13), `zcdp_epsilon` the smallest ε for a δ (bisection on `zcdp_delta`, rounded *up*), and `max_rho` the
  largest ρ whose `zcdp_epsilon` stays within a target ε (rounded *down*). A test pins `zcdp_epsilon` against
  OpenDP's ``make_zCDP_to_approxDP`` and below Bun & Steinke's ρ + 2·√(ρ·ln(1/δ)).

This is the only zCDP → (ε, δ) conversion in Veilbox (federated training, `sandbox.federated`, and the holder's
own lifetime cap, `veilbox.federated.Holder`, both call it). Floats are used throughout: every search rounds in
the direction that overstates ε (never understates it).
"""

from __future__ import annotations

import math

__all__ = ["ddg_rho", "max_rho", "zcdp_delta", "zcdp_epsilon"]

_BISECTIONS = 100


def _tau(sigma: float, summands: int) -> float:
    return 10.0 * sum(math.exp(-2.0 * math.pi**2 * sigma**2 * k / (k + 1)) for k in range(1, summands))


def ddg_rho(sensitivity: float, sigma: float, summands: int, dim: int) -> float:
    """ρ of adding the sum of ``summands`` independent N_Z(0, σ²)^dim to an integer vector of L2 sensitivity
    ``sensitivity`` (Kairouz, Liu & Steinke 2021, Prop. 14, its zCDP bound)."""
    if sigma < 0.5:
        raise ValueError("the distributed discrete Gaussian bound needs sigma >= 1/2")
    return 0.5 * (sensitivity / (math.sqrt(summands) * sigma) + _tau(sigma, summands) * math.sqrt(dim)) ** 2


def zcdp_delta(rho: float, epsilon: float) -> float:
    """The smallest δ for which ρ-zCDP implies (ε, δ)-DP (Canonne, Kamath & Steinke 2020, Cor. 13):
    ``inf_{α>1} exp((α−1)(αρ−ε)) / (α−1) · (1 − 1/α)^α``; the exponent is convex in α, so bisect its slope."""
    if rho <= 0:
        return 0.0
    lo, hi = 1.0 + 1e-12, max(2.0, (epsilon + 1.0) / (2.0 * rho) + 2.0)
    for _ in range(_BISECTIONS):
        alpha = (lo + hi) / 2
        if (2 * alpha - 1) * rho - epsilon + math.log1p(-1.0 / alpha) < 0:
            lo = alpha
        else:
            hi = alpha
    alpha = (lo + hi) / 2
    log_delta = (alpha - 1) * (alpha * rho - epsilon) + alpha * math.log1p(-1.0 / alpha) - math.log(alpha - 1)
    return min(1.0, math.exp(min(log_delta, 0.0)))


def zcdp_epsilon(rho: float, delta: float) -> float:
    """The smallest ε (up to 1e-12 relative, rounded up) such that ρ-zCDP implies (ε, δ)-DP."""
    if not 0 < delta < 1:
        raise ValueError("delta must lie in (0, 1)")
    if rho <= 0:
        return 0.0
    lo, hi = 0.0, rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))  # Bun & Steinke's bound is always valid
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        if zcdp_delta(rho, mid) <= delta:
            hi = mid
        else:
            lo = mid
    return hi


def max_rho(epsilon: float, delta: float) -> float:
    """The largest ρ (rounded down) with ``zcdp_epsilon(ρ, δ) ≤ ε``: the zCDP budget an (ε, δ) target allows."""
    lo, hi = 0.0, epsilon * epsilon  # ρ with zcdp_epsilon(ρ, δ) ≤ ε: ρ ≤ ε² always suffices as a bracket
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        if zcdp_epsilon(mid, delta) <= epsilon:
            lo = mid
        else:
            hi = mid
    return lo
