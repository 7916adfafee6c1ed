"""The federated DP mechanism: the public plan, each holder's clipped and noised contribution, and its accounting.

Several holders (banks, bureaus) each hold rows of the same public schema and train a logistic regression for an
operator without pooling them: one secure-aggregation round per training round, the operator receiving only the
noisy sum. The *roles* (the holder answering rounds, the coordinator opening them) are client code
(`veilbox.federated`); everything that decides the privacy guarantee is here, in the sandbox, where the data
owner reviews it and where the gateway checks each round's task against it (`task_problems`, called when an
operator opens a round).

Mechanism (federated DP Newton)
-------------------------------
Rows are encoded by the public declaration (`sandbox.train.encoding.FeatureEncoding`: bounded columns scaled to
[−1, 1], domains one-hot; `encoding_from_declaration`), plus a bias 1, so every coordinate lies in [−1, 1] and
``‖x‖₂ ≤ B = √(features + 1)`` (rows are also clipped to B). For weights ``w`` each row contributes

    c = [ (p − y)·x ;  upper-triangle of p(1 − p)·x xᵀ ;  1 ]        p = σ(w·x),   ‖c‖₂ ≤ Δ = √(B² + B⁴/16 + 1)

A holder sums its rows' ``c`` (`contribution_sum`), divides by the public step γ, rounds stochastically (coins
from the OS CSPRNG, `mpc.secagg.prg.random_unit`) and adds **discrete Gaussian noise N_Z(0, σ_l²)** per
coordinate (`noisy_words`, OpenDP's sampler `sandbox.dp.samplers.DiscreteGaussian`): its share of the noise. The
coordinator decodes the sum of the survivors' vectors (`decode_words`) into a noisy gradient, Hessian and row
count and takes one damped Newton step (Hessian eigenvalues floored at ``ridge``). A handful of rounds suffices.

Guarantee
---------
- **Unit of privacy:** one row of one holder's data; neighbouring = adding or removing one row at one holder.
- **Sensitivity** in integers: ``Δ_Z = Δ/γ + √D`` (D = vector length; stochastic rounding with fixed coins moves
  each coordinate by less than one more step; the coins do not depend on the data, and Rényi divergence is
  quasi-convex, so the mixture keeps the bound).
- **Per round:** a sum of m independent N_Z(0, σ_l²)^D is ρ_m-zCDP with ``ρ_m = ½(Δ_Z/(√m·σ_l) + τ_m·√D)²``
  (`sandbox.dp.zcdp.ddg_rho`: Kairouz, Liu & Steinke, ICML 2021, Prop. 14; needs σ_l ≥ ½). **Dropouts:** a round
  releases a sum only if at least t holders survive (otherwise it aborts and releases nothing), so the noise is
  scaled for the threshold: each holder adds σ_l as if only t survive and the round costs
  ``ρ_round = max_{t ≤ m ≤ n} ρ_m``. More survivors add more noise than needed (a less accurate step, never a
  weaker guarantee); fewer than t never release.
- **Over rounds:** zCDP composes additively (also adaptively: round r's weights are computed from earlier releases
  only), ``ρ = R·ρ_round`` for R released rounds, converted to (ε, δ) by the one conversion of
  `sandbox.dp.zcdp` (Canonne, Kamath & Steinke 2020, Cor. 13). `FederatedPlan.calibrate` picks the smallest σ_l
  that meets a target (ε, δ) for the planned rounds (`sandbox.dp.zcdp.max_rho`).

A plan names at least `MIN_HOLDERS` holders and a threshold that is a strict majority and at least three, as the
gateway requires of every round (`gateway.services.rounds.round_policy`). The gateway refuses to open a round whose
task is a federated plan that is malformed, whose noise does not give the ε it states, or whose round threshold,
vector layout, modulus, round index or weights do not fit the plan (`task_problems`); each holder checks the same
and more (its own lifetime cap, the participants, the plan it pinned: `veilbox.federated.Holder`).

Known limits: the secure-aggregation server is honest-but-curious (`mpc.secagg`); holders colluding with the
operator can subtract their own noise, so the guarantee assumes the noise of at least t non-colluding holders in
each sum; the row count of each holder is protected only as part of the noisy total; a holder with more than
``max_rows_per_holder`` rows is refused (the modulus must hold the sum); the number of rows and features is public.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from catalog.fingerprint import HashAlg, digest
from mpc.secagg.prg import random_unit
from sandbox.dp.samplers import DiscreteGaussian
from sandbox.dp.zcdp import ddg_rho, max_rho, zcdp_epsilon
from sandbox.train.encoding import FeatureEncoding, OneHotFeature, ScaledFeature

__all__ = [
    "DATA_RANGE",
    "MIN_HOLDERS",
    "MODULUS_BITS",
    "TASK_KIND",
    "FederatedPlan",
    "Guarantee",
    "contribution_sum",
    "decode_words",
    "encoding_from_declaration",
    "noisy_words",
    "sigmoid",
    "task_problems",
]

TASK_KIND = "veilbox.federated-newton/v1"
MODULUS_BITS = 32
DATA_RANGE = 1 << 30  # the decoded sum must lie in (−2^31, 2^31): half of it for data, the rest for noise
MIN_HOLDERS = 3  # and the least threshold: the gateway opens no round for fewer (gateway.services.rounds)
_RELATIVE_SLACK = 1e-9  # float rounding allowed when comparing a plan's ε with the ε it states


@dataclass(frozen=True)
class Guarantee:
    """(ε, δ) of some released rounds of a plan, and their zCDP cost ρ."""

    epsilon: float
    delta: float
    rho: float


class FederatedPlan(BaseModel):
    """Everything public about one federated training: encoding, holders, threshold, rounds and noise.

    Published in every round's task; the gateway (`task_problems`) and the holders check it before anything is
    contributed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    plan_id: str = Field(min_length=1, max_length=64)
    encoding: FeatureEncoding
    holders: tuple[str, ...] = Field(min_length=MIN_HOLDERS, max_length=1000)
    threshold: int
    rounds: int = Field(ge=1, le=100)
    epsilon: float = Field(gt=0, le=100, description="the target (ε, δ) for all planned rounds")
    delta: float = Field(gt=0, lt=1)
    sigma_local: float = Field(ge=1.0, description="each holder's discrete Gaussian scale, integer units")
    gamma: float = Field(gt=0, description="quantisation step: one integer unit is γ")
    max_rows_per_holder: int = Field(ge=1)
    ridge: float = Field(1e-2, gt=0, description="floor of the averaged Hessian's eigenvalues")
    step: float = Field(1.0, gt=0, le=1, description="Newton step damping")

    @model_validator(mode="after")
    def _check(self) -> FederatedPlan:
        n = len(self.holders)
        if len(set(self.holders)) != n:
            raise ValueError("holders must be distinct")
        if not (n // 2 < self.threshold <= n and self.threshold >= MIN_HOLDERS):
            raise ValueError(
                f"threshold must be a strict majority of the holders (n/2 < t <= n) and at least {MIN_HOLDERS}"
            )
        data = n * self.max_rows_per_holder / self.gamma
        if data > DATA_RANGE or 10 * math.sqrt(n) * self.sigma_local > DATA_RANGE:
            raise ValueError("the 32-bit modulus cannot hold this many rows at this precision and noise")
        return self

    # The layout of a contribution: gradient (d), upper triangle of the Hessian (d(d+1)/2), row count (1).
    @property
    def dim(self) -> int:
        """The model's width: the encoded features plus the bias."""
        return self.encoding.width + 1

    @property
    def vector_length(self) -> int:
        """D, the words of one contribution: gradient, Hessian upper triangle and row count."""
        d = self.dim
        return d + d * (d + 1) // 2 + 1

    @property
    def feature_bound(self) -> float:
        """B: the L2 norm of an encoded row with its bias (each feature contributes at most 1)."""
        return math.sqrt(len(self.encoding.features) + 1)

    @property
    def row_sensitivity(self) -> float:
        """Δ = √(B² + B⁴/16 + 1): the L2 norm bound of one row's contribution."""
        b2 = self.feature_bound**2
        return math.sqrt(b2 + b2 * b2 / 16.0 + 1.0)

    @property
    def integer_sensitivity(self) -> float:
        """Δ_Z = Δ/γ + √D: the sensitivity after quantisation by γ and stochastic rounding."""
        return self.row_sensitivity / self.gamma + math.sqrt(self.vector_length)

    def rho_round(self) -> float:
        """ρ of one released round, assuming the fewest possible survivors (the threshold) and up to all."""
        n, d = len(self.holders), self.vector_length
        return max(ddg_rho(self.integer_sensitivity, self.sigma_local, m, d) for m in range(self.threshold, n + 1))

    def guarantee(self, released: int | None = None) -> Guarantee:
        """(ε, δ) after ``released`` rounds (default: all planned rounds)."""
        count = self.rounds if released is None else released
        rho = count * self.rho_round()
        return Guarantee(zcdp_epsilon(rho, self.delta) if rho > 0 else 0.0, self.delta, rho)

    def gives_stated_epsilon(self) -> bool:
        """Whether the plan's noise, over all its rounds, gives (up to float rounding) the ε the plan states."""
        return self.guarantee().epsilon <= self.epsilon * (1 + _RELATIVE_SLACK)

    def central_std(self, survivors: int) -> float:
        """The standard deviation (in gradient units) of the noise on each coordinate of a sum of ``survivors``."""
        return math.sqrt(survivors) * self.sigma_local * self.gamma

    def digest(self, hash_alg: HashAlg = "sha256") -> str:
        """``<alg>:<hex>`` of the plan's sorted-key JSON with the home suite's hash ``hash_alg`` (``sha256:`` in
        ``intl``, ``sm3:`` in ``sm``): the identity a holder's accepted plan is bound to."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return digest(canonical, hash_alg)

    def summary(self, hash_alg: HashAlg = "sha256") -> dict[str, Any]:
        """What a holder is asked to accept, in one line each: shown before it contributes (the digest with the
        home suite's hash ``hash_alg``)."""
        g = self.guarantee()
        return {
            "plan_id": self.plan_id,
            "digest": self.digest(hash_alg),
            "holders": list(self.holders),
            "threshold": self.threshold,
            "rounds": self.rounds,
            "epsilon": g.epsilon,
            "delta": g.delta,
            "features": list(self.encoding.feature_names),
            "label": self.encoding.label,
            "sigma_local": self.sigma_local,
            "max_rows_per_holder": self.max_rows_per_holder,
        }

    @classmethod
    def calibrate(
        cls,
        encoding: FeatureEncoding,
        holders: Sequence[str],
        threshold: int,
        rounds: int,
        epsilon: float,
        delta: float,
        *,
        max_rows_per_holder: int = 100_000,
        ridge: float = 1e-2,
        step: float = 1.0,
        plan_id: str | None = None,
    ) -> FederatedPlan:
        """The plan with the smallest per-holder noise that keeps ``rounds`` releases within (ε, δ)."""
        if not (0 < epsilon <= 100 and 0 < delta < 1 and rounds >= 1):
            raise ValueError("need 0 < epsilon <= 100, 0 < delta < 1 and at least one round")
        gamma = len(holders) * max_rows_per_holder / DATA_RANGE
        rho_round = max_rho(epsilon, delta) / rounds
        draft: dict[str, Any] = {
            "plan_id": plan_id or "fp-" + secrets.token_hex(8),
            "encoding": encoding,
            "holders": tuple(holders),
            "threshold": threshold,
            "rounds": rounds,
            "epsilon": epsilon,
            "delta": delta,
            "gamma": gamma,
            "max_rows_per_holder": max_rows_per_holder,
            "ridge": ridge,
            "step": step,
        }
        s_lo, s_hi = 1.0, 1e12
        if cls.model_validate({**draft, "sigma_local": s_lo}).rho_round() <= rho_round:
            return cls.model_validate({**draft, "sigma_local": s_lo})
        for _ in range(100):
            mid = math.sqrt(s_lo * s_hi)
            if cls.model_construct(**draft, sigma_local=mid, version=1).rho_round() <= rho_round:
                s_hi = mid
            else:
                s_lo = mid
        return cls.model_validate({**draft, "sigma_local": s_hi})


def encoding_from_declaration(declaration: Mapping[str, Any], features: Sequence[str], label: str) -> FeatureEncoding:
    """The public encoding of ``features`` and ``label`` from a dataset declaration (the ``.spec.json`` an owner
    publishes): columns with a ``domain`` are one-hot, columns with ``bounds`` are scaled to [−1, 1]."""
    columns = declaration.get("columns", {})
    feats: list[ScaledFeature | OneHotFeature] = []
    for name in features:
        info = columns.get(name)
        if not isinstance(info, Mapping) or info.get("role") not in ("dimension", "measure"):
            raise ValueError(f"feature {name!r} is not a declared dimension or measure")
        if info.get("domain") is not None:
            feats.append(OneHotFeature(column=name, domain=tuple(info["domain"])))
        elif info.get("bounds") is not None:
            lower, upper = info["bounds"]
            feats.append(ScaledFeature(column=name, lower=float(lower), upper=float(upper)))
        else:
            raise ValueError(f"feature {name!r} needs a declared domain or bounds")
    lab = columns.get(label)
    if not isinstance(lab, Mapping) or lab.get("domain") is None or len(lab["domain"]) != 2:
        raise ValueError("the label must be declared with a two-value domain")
    return FeatureEncoding(features=tuple(feats), label=label, label_domain=(lab["domain"][0], lab["domain"][1]))


# --- one holder's contribution --------------------------------------------------------------------------------------


def sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
    """The logistic function, with its argument clipped to [−60, 60]."""
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0))), dtype=np.float64)


def contribution_sum(
    plan: FederatedPlan, x: NDArray[np.float64], y: NDArray[np.float64], weights: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Σ over rows of ``[(p − y)x ; upper(p(1 − p) x xᵀ) ; 1]`` with rows clipped to ‖x‖ ≤ B (exact, no noise)."""
    norms = np.linalg.norm(x, axis=1)
    x = x * np.minimum(1.0, plan.feature_bound / np.maximum(norms, 1e-300))[:, None]
    p = sigmoid(x @ weights)
    g = x.T @ (p - y)
    h = (x * (p * (1 - p))[:, None]).T @ x
    return np.concatenate([g, h[np.triu_indices(plan.dim)], [float(len(y))]])


def noisy_words(plan: FederatedPlan, total: NDArray[np.float64]) -> NDArray[np.uint32]:
    """A holder's secure-aggregation input: ``⌊total/γ + U⌋ + N_Z(0, σ_l²)`` per coordinate, mod 2^32."""
    scaled = total / plan.gamma
    q = np.floor(scaled + random_unit(scaled.size)).astype(np.int64)
    q += np.asarray(DiscreteGaussian(plan.sigma_local).noise(scaled.size), dtype=np.int64)
    return (q & np.int64((1 << MODULUS_BITS) - 1)).astype(np.uint32)


def decode_words(plan: FederatedPlan, words: NDArray[np.uint32]) -> NDArray[np.float64]:
    """The released sum (uint32 words) as signed integers times γ."""
    v = words.astype(np.int64)
    v = np.where(v >= 1 << (MODULUS_BITS - 1), v - (1 << MODULUS_BITS), v)
    return v.astype(np.float64) * plan.gamma


# --- the gateway's check of a round's task ---------------------------------------------------------------------------


def task_problems(
    task: Mapping[str, Any], threshold: int, vector_length: int, modulus_bits: int
) -> list[dict[str, Any]]:
    """Why a secure-aggregation round with this public ``task`` must not open (empty when it may).

    Only tasks of kind `TASK_KIND` are federated training; any other task is not this mechanism's and passes. For
    a federated task: the plan must be a valid `FederatedPlan` whose noise gives the ε it states, the round's
    threshold must be at least the plan's (the noise is scaled for it), its vector length and modulus the plan's
    layout, the round index one of the plan's rounds and the weights ``plan.dim`` finite numbers. Problems name
    the field, never echo the value.
    """
    if task.get("kind") != TASK_KIND:
        return []
    try:
        plan = FederatedPlan.model_validate(task.get("plan"))
    except (ValidationError, ValueError, TypeError):
        return [{"field": "task.plan", "problem": "not a valid federated training plan"}]
    out: list[dict[str, Any]] = []
    if not plan.gives_stated_epsilon():
        out.append({"field": "task.plan", "problem": "the plan's noise does not give the ε it states"})
    if threshold < plan.threshold:
        out.append({"field": "threshold", "problem": "below the plan's threshold (its noise would not cover it)"})
    if vector_length != plan.vector_length:
        out.append({"field": "vector_length", "problem": "differs from the plan's vector layout"})
    if modulus_bits != MODULUS_BITS:
        out.append({"field": "modulus_bits", "problem": f"federated training uses {MODULUS_BITS}-bit words"})
    index = task.get("round")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < plan.rounds:
        out.append({"field": "task.round", "problem": "not one of the plan's rounds"})
    weights = task.get("weights")
    if not (
        isinstance(weights, list)
        and len(weights) == plan.dim
        and all(isinstance(w, int | float) and not isinstance(w, bool) and math.isfinite(w) for w in weights)
    ):
        out.append({"field": "task.weights", "problem": f"must be {plan.dim} finite numbers"})
    return out
