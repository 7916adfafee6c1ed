"""Federated DP training: holders keep their Parquet; the operator learns a logistic regression from noisy sums.

Several holders (banks, bureaus) each hold rows of the same public schema. The operator's `Coordinator` opens one
secure-aggregation round per training round (`gateway.secagg_rounds`) under its agreement, with a public task: the
`FederatedPlan` and the current weights. Each `Holder` computes its contribution on its own machine, adds its share
of the noise and joins the round (`veilbox.secagg_client.join_round`); the coordinator receives only the sum.

Mechanism (federated DP Newton)
-------------------------------
Rows are encoded by the public declaration (`sandbox.train.FeatureEncoding`: bounded columns scaled to [−1, 1],
domains one-hot), plus a bias 1, so every coordinate lies in [−1, 1] and ``‖x‖₂ ≤ B = √(features + 1)`` (rows are
also clipped to B). For weights ``w`` each row contributes

    c = [ (p − y)·x ;  upper-triangle of p(1 − p)·x xᵀ ;  1 ]        p = σ(w·x),   ‖c‖₂ ≤ Δ = √(B² + B⁴/16 + 1)

A holder sums its rows' ``c``, divides by the public step γ, rounds stochastically (coins from the OS CSPRNG) and
adds **discrete Gaussian noise N_Z(0, σ_l²)** per coordinate, sampled by OpenDP (`discrete_gaussian`): its share of
the noise. The coordinator decodes the sum of the survivors' vectors into a noisy gradient, Hessian and row count
and takes one damped Newton step (Hessian eigenvalues floored at ``ridge``). A handful of rounds suffices.

Guarantee
---------
- **Unit of privacy:** one row of one holder's data; neighbouring = adding or removing one row at one holder.
- **Sensitivity** in integers: ``Δ_Z = Δ/γ + √D`` (D = vector length; stochastic rounding with fixed coins moves
  each coordinate by less than one more step; the coins do not depend on the data, and Rényi divergence is
  quasi-convex, so the mixture keeps the bound).
- **Per round:** a sum of m independent N_Z(0, σ_l²)^D is ρ_m-zCDP with ``ρ_m = ½(Δ_Z/(√m·σ_l) + τ_m·√D)²``,
  ``τ_m = 10·Σ_{k=1}^{m−1} exp(−2π²σ_l²·k/(k+1))`` (Kairouz, Liu & Steinke, *The Distributed Discrete Gaussian
  Mechanism*, ICML 2021, Prop. 14; needs σ_l ≥ ½). **Dropouts:** a round releases a sum only if at least t holders
  survive (otherwise it aborts and releases nothing), so the noise is scaled for the threshold: each holder adds
  σ_l as if only t survive and the round costs ``ρ_round = max_{t ≤ m ≤ n} ρ_m``. More survivors add more noise
  than needed (a less accurate step, never a weaker guarantee); fewer than t never release.
- **Over rounds:** zCDP composes additively (also adaptively: round r's weights are computed from earlier releases
  only), ``ρ = R·ρ_round`` for R released rounds, converted to (ε, δ) by Canonne, Kamath & Steinke 2020, Cor. 13
  (`zcdp_epsilon`). `FederatedPlan.calibrate` picks the smallest σ_l that meets a target (ε, δ) for the planned
  rounds; the model card states the (ε, δ) of the rounds actually released and each round's survivors.

What each party sees: the gateway sees masked vectors (uniform) and releases the noisy sum to the operator only;
the operator sees the noisy sums, the survivor lists and nothing per holder; holders see the public plan and the
weights (post-processing of earlier releases).

Holders do not trust the coordinator with their privacy: before joining a round a holder recomputes the plan's
guarantee from its parameters and refuses a plan that, with everything it contributed to earlier plans (its
ledger; zCDP adds up), would exceed its own lifetime ε cap, a δ above its cap, a plan other than the one it
pinned by digest, a round whose participants or threshold differ from the plan, a changed plan, a repeated
round index and any round beyond the plan's count. A `Holder` needs a lifetime ε cap or a pinned plan digest
(else it refuses to start: a plan id alone fixes nothing about ε), and reports each plan it accepts
(`HolderReport.accepted`, ``on_accept``). A plan names at least three holders and a threshold of at least three,
as the gateway requires of every round (`gateway.secagg_rounds.round_policy`): no released sum is of fewer than
three holders' contributions.

Known limits: the secure-aggregation server is honest-but-curious (`mpc.secagg`); holders colluding with the
operator can subtract their own noise, so the guarantee assumes the noise of at least t non-colluding holders in
each sum; the row count of each holder is protected only as part of the noisy total; a holder with more than
``max_rows_per_holder`` rows is refused (the modulus must hold the sum); the number of rows and features is public.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import opendp.prelude as dp
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mpc.secagg import RoundAborted, RoundConfig, Stage
from mpc.secagg.prg import random_unit
from sandbox.train import FeatureEncoding
from sandbox.train.encoding import OneHotFeature, ScaledFeature
from veilbox.client import ApiError, Client
from veilbox.secagg_client import decode_sum, join_round, round_config

__all__ = [
    "TASK_KIND",
    "Coordinator",
    "FederatedModel",
    "FederatedPlan",
    "Holder",
    "HolderReport",
    "PlanRefused",
    "RoundRecord",
    "discrete_gaussian",
    "encoding_from_declaration",
    "evaluate",
    "load_rows",
    "train_central",
    "zcdp_delta",
    "zcdp_epsilon",
]

dp.enable_features("contrib")

TASK_KIND = "veilbox.federated-newton/v1"
MODULUS_BITS = 32
_DATA_RANGE = 1 << 30  # the decoded sum must lie in (−2^31, 2^31): half of it for data, the rest for noise
LONG_POLL_S = 25.0
MIN_HOLDERS = 3  # and the least threshold: the gateway opens no round for fewer (gateway.secagg_rounds)


# --- accounting ----------------------------------------------------------------------------------------------------

def zcdp_delta(rho: float, epsilon: float) -> float:
    """The smallest δ for which ρ-zCDP implies (ε, δ)-DP (Canonne, Kamath & Steinke 2020, Cor. 13):
    ``inf_{α>1} exp((α−1)(αρ−ε)) / (α−1) · (1 − 1/α)^α``; the exponent is convex in α, so bisect its slope."""
    if rho <= 0:
        return 0.0
    lo, hi = 1.0 + 1e-12, max(2.0, (epsilon + 1.0) / (2.0 * rho) + 2.0)
    for _ in range(100):
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
    for _ in range(100):
        mid = (lo + hi) / 2
        if zcdp_delta(rho, mid) <= delta:
            hi = mid
        else:
            lo = mid
    return hi


def _tau(sigma: float, summands: int) -> float:
    return 10.0 * sum(math.exp(-2.0 * math.pi**2 * sigma**2 * k / (k + 1)) for k in range(1, summands))


def ddg_rho(sensitivity: float, sigma: float, summands: int, dim: int) -> float:
    """ρ of adding the sum of ``summands`` independent N_Z(0, σ²)^dim to an integer vector of L2 sensitivity
    ``sensitivity`` (Kairouz, Liu & Steinke 2021, Prop. 14, its zCDP bound)."""
    if sigma < 0.5:
        raise ValueError("the distributed discrete Gaussian bound needs sigma >= 1/2")
    return 0.5 * (sensitivity / (math.sqrt(summands) * sigma) + _tau(sigma, summands) * math.sqrt(dim)) ** 2


# --- noise -----------------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def _gaussian(scale: float) -> Any:
    domain = dp.vector_domain(dp.atom_domain(T="i64"))
    return dp.m.make_gaussian(input_domain=domain, input_metric=dp.l2_distance(T="i64"), scale=scale)


def discrete_gaussian(scale: float, n: int) -> NDArray[np.int64]:
    """``n`` independent draws of N_Z(0, scale²) from OpenDP's exact sampler (OS CSPRNG; never NumPy's RNG)."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(_gaussian(float(scale))([0] * n), dtype=np.int64)


# --- the plan -------------------------------------------------------------------------------------------------------

class PlanRefused(ValueError):
    """A holder refuses a plan or a round (the reason says which check failed)."""


@dataclass(frozen=True)
class Guarantee:
    epsilon: float
    delta: float
    rho: float


class FederatedPlan(BaseModel):
    """Everything public about one federated training: encoding, holders, threshold, rounds and noise.

    Published in every round's task; the holders check it (`Holder.check_plan`) before contributing.
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
            raise ValueError(f"threshold must be a strict majority of the holders (n/2 < t <= n) and at least "
                             f"{MIN_HOLDERS}")
        data = n * self.max_rows_per_holder / self.gamma
        if data > _DATA_RANGE or 10 * math.sqrt(n) * self.sigma_local > _DATA_RANGE:
            raise ValueError("the 32-bit modulus cannot hold this many rows at this precision and noise")
        return self

    # The layout of a contribution: gradient (d), upper triangle of the Hessian (d(d+1)/2), row count (1).
    @property
    def dim(self) -> int:
        return self.encoding.width + 1

    @property
    def vector_length(self) -> int:
        d = self.dim
        return d + d * (d + 1) // 2 + 1

    @property
    def feature_bound(self) -> float:
        """B: the L2 norm of an encoded row with its bias (each feature contributes at most 1)."""
        return math.sqrt(len(self.encoding.features) + 1)

    @property
    def row_sensitivity(self) -> float:
        b2 = self.feature_bound**2
        return math.sqrt(b2 + b2 * b2 / 16.0 + 1.0)

    @property
    def integer_sensitivity(self) -> float:
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

    def central_std(self, survivors: int) -> float:
        """The standard deviation (in gradient units) of the noise on each coordinate of a sum of ``survivors``."""
        return math.sqrt(survivors) * self.sigma_local * self.gamma

    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()

    def summary(self) -> dict[str, Any]:
        """What a holder is asked to accept, in one line each: shown before it contributes."""
        g = self.guarantee()
        return {"plan_id": self.plan_id, "digest": self.digest(), "holders": list(self.holders),
                "threshold": self.threshold, "rounds": self.rounds, "epsilon": g.epsilon, "delta": g.delta,
                "features": list(self.encoding.feature_names), "label": self.encoding.label,
                "sigma_local": self.sigma_local, "max_rows_per_holder": self.max_rows_per_holder}

    @classmethod
    def calibrate(cls, encoding: FeatureEncoding, holders: Sequence[str], threshold: int, rounds: int,
                  epsilon: float, delta: float, *, max_rows_per_holder: int = 100_000, ridge: float = 1e-2,
                  step: float = 1.0, plan_id: str | None = None) -> FederatedPlan:
        """The plan with the smallest per-holder noise that keeps ``rounds`` releases within (ε, δ)."""
        if not (0 < epsilon <= 100 and 0 < delta < 1 and rounds >= 1):
            raise ValueError("need 0 < epsilon <= 100, 0 < delta < 1 and at least one round")
        gamma = len(holders) * max_rows_per_holder / _DATA_RANGE
        lo, hi = 0.0, epsilon * epsilon  # ρ with zcdp_epsilon(ρ, δ) ≤ ε: ρ ≤ ε² always suffices as a bracket
        for _ in range(100):
            mid = (lo + hi) / 2
            if zcdp_epsilon(mid, delta) <= epsilon:
                lo = mid
            else:
                hi = mid
        rho_round = lo / rounds
        draft: dict[str, Any] = {
            "plan_id": plan_id or "fp-" + secrets.token_hex(8), "encoding": encoding, "holders": tuple(holders),
            "threshold": threshold, "rounds": rounds, "epsilon": epsilon, "delta": delta, "gamma": gamma,
            "max_rows_per_holder": max_rows_per_holder, "ridge": ridge, "step": step}
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


# --- rows, model and metrics ----------------------------------------------------------------------------------------

def load_rows(data: Path | pa.Table, encoding: FeatureEncoding) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Encoded rows with a trailing bias column, and 0/1 labels (rows with a missing label are dropped)."""
    table = data if isinstance(data, pa.Table) else pq.read_table(data, columns=[*encoding.columns, encoding.label])
    x = encoding.encode_batch(table).astype(np.float64)
    y, usable = encoding.encode_label(table)
    x = np.hstack([x[usable], np.ones((int(usable.sum()), 1))])
    return x, y[usable].astype(np.float64)


def _sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0))), dtype=np.float64)


def _newton_step(w: NDArray[np.float64], g: NDArray[np.float64], h: NDArray[np.float64], count: float,
                 ridge: float, step: float) -> NDArray[np.float64]:
    n = max(count, 1.0)
    vals, vecs = np.linalg.eigh((h + h.T) / (2.0 * n))
    inv = (vecs / np.maximum(vals, ridge)) @ vecs.T
    return np.asarray(w - step * (inv @ (g / n)), dtype=np.float64)


def train_central(x: NDArray[np.float64], y: NDArray[np.float64], iterations: int = 25,
                  ridge: float = 1e-6) -> NDArray[np.float64]:
    """A non-private Newton fit on pooled rows: the baseline the federated model is compared with."""
    w = np.zeros(x.shape[1])
    for _ in range(iterations):
        p = _sigmoid(x @ w)
        w = _newton_step(w, x.T @ (p - y), (x * (p * (1 - p))[:, None]).T @ x, float(len(y)), ridge, 1.0)
    return w


def evaluate(w: NDArray[np.float64], x: NDArray[np.float64], y: NDArray[np.float64]) -> dict[str, float]:
    """Accuracy at 0.5, AUC, and the accuracy of always predicting the majority class."""
    score = x @ w
    accuracy = float(np.mean((score > 0) == (y > 0.5)))
    order = np.argsort(score, kind="stable")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    pos = float(y.sum())
    neg = len(y) - pos
    auc = float((ranks[y > 0.5].sum() - pos * (pos + 1) / 2) / (pos * neg)) if pos and neg else float("nan")
    return {"accuracy": accuracy, "auc": auc, "majority": float(max(y.mean(), 1 - y.mean()))}


# --- holders --------------------------------------------------------------------------------------------------------

def contribution_sum(plan: FederatedPlan, x: NDArray[np.float64], y: NDArray[np.float64],
                     weights: NDArray[np.float64]) -> NDArray[np.float64]:
    """Σ over rows of ``[(p − y)x ; upper(p(1 − p) x xᵀ) ; 1]`` with rows clipped to ‖x‖ ≤ B (exact, no noise)."""
    norms = np.linalg.norm(x, axis=1)
    x = x * np.minimum(1.0, plan.feature_bound / np.maximum(norms, 1e-300))[:, None]
    p = _sigmoid(x @ weights)
    g = x.T @ (p - y)
    h = (x * (p * (1 - p))[:, None]).T @ x
    return np.concatenate([g, h[np.triu_indices(plan.dim)], [float(len(y))]])


def noisy_words(plan: FederatedPlan, total: NDArray[np.float64]) -> NDArray[np.uint32]:
    """A holder's secure-aggregation input: ``⌊total/γ + U⌋ + N_Z(0, σ_l²)`` per coordinate, mod 2^32."""
    scaled = total / plan.gamma
    q = np.floor(scaled + random_unit(scaled.size)).astype(np.int64)
    q += discrete_gaussian(plan.sigma_local, scaled.size)
    return (q & np.int64((1 << MODULUS_BITS) - 1)).astype(np.uint32)


def decode_words(plan: FederatedPlan, words: NDArray[np.uint32]) -> NDArray[np.float64]:
    """The released sum (uint32 words) as signed integers times γ."""
    v = words.astype(np.int64)
    v = np.where(v >= 1 << (MODULUS_BITS - 1), v - (1 << MODULUS_BITS), v)
    return v.astype(np.float64) * plan.gamma


@dataclass
class HolderReport:
    """What a holder did: the rounds it joined (and how far), and what it refused and why."""

    name: str
    joined: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)  # `FederatedPlan.summary` of each plan accepted


class Holder:
    """A data holder outside the domain: answers the federated rounds it is invited to, from its own Parquet."""

    def __init__(self, client: Client, data: Path | pa.Table, *, name: str | None = None,
                 max_epsilon: float | None = None, max_delta: float | None = None, plan_id: str | None = None,
                 plan_digest: str | None = None, ledger: Path | None = None,
                 dropouts: Mapping[int, Stage] | None = None,
                 on_accept: Callable[[FederatedPlan], None] | None = None) -> None:
        if max_epsilon is None and plan_digest is None:
            raise ValueError("a holder needs a lifetime ε cap (max_epsilon) or a plan pinned by its digest "
                             "(plan_digest): a plan id alone does not fix the plan's ε")
        if max_epsilon is not None and not (math.isfinite(max_epsilon) and max_epsilon > 0):
            raise ValueError("max_epsilon must be a positive number")
        self.client = client
        self.data = data
        self.name = name or client.me()["name"]
        self.max_epsilon, self.max_delta, self.plan_id = max_epsilon, max_delta, plan_id
        self.plan_digest, self.on_accept = plan_digest, on_accept
        self._accepted: dict[str, dict[str, Any]] = {}  # plan id → summary, in this run
        self.dropouts = dict(dropouts or {})  # round index → go silent before this stage (demos and tests)
        self.ledger_path = ledger  # the holder's own record of its contributions (kept across restarts if set)
        self._ledger: dict[str, dict[str, Any]] = self._load_ledger()  # plan id → digest, rounds, contributed
        self._rows: dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]] = {}
        self._active: set[str] = set()  # plans contributed to in this run
        self._run_contributions = 0
        self._seen: set[str] = set()

    def contributed(self, plan_id: str) -> list[int]:
        """The round indices of ``plan_id`` this holder has contributed to (or started to)."""
        return list(self._ledger.get(plan_id, {}).get("contributed", []))

    def _load_ledger(self) -> dict[str, dict[str, Any]]:
        if self.ledger_path is None or not self.ledger_path.exists():
            return {}
        data = json.loads(self.ledger_path.read_text())
        return dict(data.get("plans", {})) if isinstance(data, dict) else {}

    def _record(self, plan: FederatedPlan, index: int) -> None:
        entry = self._ledger.setdefault(plan.plan_id, {"digest": plan.digest(), "rounds": plan.rounds,
                                                       "rho_round": plan.rho_round(), "contributed": []})
        entry["contributed"].append(index)
        self._active.add(plan.plan_id)
        self._run_contributions += 1
        if self.ledger_path is not None:
            tmp = self.ledger_path.with_name(self.ledger_path.name + ".tmp")
            tmp.write_text(json.dumps({"holder": self.name, "plans": self._ledger}, indent=1))
            tmp.replace(self.ledger_path)

    def rows(self, plan: FederatedPlan) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        key = plan.encoding.model_dump_json()
        if key not in self._rows:
            self._rows[key] = load_rows(self.data, plan.encoding)
        return self._rows[key]

    def check_plan(self, plan: FederatedPlan, config: RoundConfig, index: int) -> None:
        """Refuse (`PlanRefused`) unless contributing to this round keeps the plan's promise to this holder."""
        if self.plan_id is not None and plan.plan_id != self.plan_id:
            raise PlanRefused("not the plan this holder agreed to")
        if self.plan_digest is not None and plan.digest() != self.plan_digest:
            raise PlanRefused("not the plan this holder pinned (its digest differs)")
        if self.name not in plan.holders:
            raise PlanRefused("the plan does not name this holder")
        if set(config.participants) != set(plan.holders) or len(config.participants) != len(plan.holders):
            raise PlanRefused("the round's participants differ from the plan's holders")
        if config.threshold < plan.threshold:
            raise PlanRefused("the round's threshold is below the plan's (the noise would not cover it)")
        if config.vector_length != plan.vector_length or config.modulus_bits != MODULUS_BITS:
            raise PlanRefused("the round's vector layout differs from the plan's")
        entry = self._ledger.get(plan.plan_id)
        if entry is not None and entry["digest"] != plan.digest():
            raise PlanRefused("the plan changed after this holder first contributed to it")
        done = set(self.contributed(plan.plan_id))
        if index in done or not 0 <= index < plan.rounds or len(done) >= plan.rounds:
            raise PlanRefused("the round index is repeated or beyond the plan's rounds")
        promised = plan.guarantee()
        if promised.epsilon > plan.epsilon * (1 + 1e-9):
            raise PlanRefused("the plan's noise does not give the ε it states")
        if self.max_epsilon is not None:  # a lifetime cap: this plan's rounds plus every earlier contribution
            earlier = sum(float(e.get("rho_round", 0.0)) * len(e["contributed"])
                          for pid, e in self._ledger.items() if pid != plan.plan_id)
            committed = earlier + plan.rounds * plan.rho_round()
            if zcdp_epsilon(committed, self.max_delta or plan.delta) > self.max_epsilon * (1 + 1e-9):
                raise PlanRefused("the plan's ε is above this holder's cap"
                                  + (" (counting its earlier contributions)" if earlier else ""))
        if self.max_delta is not None and plan.delta > self.max_delta:
            raise PlanRefused("the plan's δ is above this holder's cap")
        x, _ = self.rows(plan)
        if len(x) > plan.max_rows_per_holder:
            raise PlanRefused("this holder has more rows than the plan's max_rows_per_holder")

    def contribution(self, plan: FederatedPlan, weights: Sequence[float]) -> NDArray[np.uint32]:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (plan.dim,) or not np.all(np.isfinite(w)):
            raise PlanRefused("the round's weights do not fit the plan")
        x, y = self.rows(plan)
        return noisy_words(plan, contribution_sum(plan, x, y, w))

    def join(self, status: Mapping[str, Any]) -> dict[str, Any]:
        """Check and join one round (its status from ``GET /v1/secagg/rounds``); `PlanRefused` if refused."""
        task = status.get("task") or {}
        plan = FederatedPlan.model_validate(task.get("plan"))
        config = round_config(dict(status))
        index = int(task.get("round", -1))
        self.check_plan(plan, config, index)
        vector = self.contribution(plan, task.get("weights", ()))
        if plan.plan_id not in self._accepted:
            self._accepted[plan.plan_id] = plan.summary()
            if self.on_accept is not None:
                self.on_accept(plan)
        self._record(plan, index)  # counted before anything is sent: conservative
        record: dict[str, Any] = {"plan_id": plan.plan_id, "round": index, "round_id": config.round_id}
        try:
            out = join_round(self.client, config.round_id, vector, name=self.name, config=config,
                             stop_before=self.dropouts.get(index))
            record.update(sent=list(out.sent), survived=out.survived)
        except RoundAborted as exc:
            record.update(aborted=exc.message)
        return record

    def run(self, *, timeout_s: float = 3600.0, wait_s: float = 2.0, stop: threading.Event | None = None,
            rounds: int | None = None) -> HolderReport:
        """Join federated rounds as they open until the plan's rounds (or ``rounds``) are done, ``stop`` is set or
        ``timeout_s`` passes; long-polls ``wait_s`` seconds at a time for a round that waits for this holder."""
        report = HolderReport(self.name)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            wait = max(0.0, min(wait_s, deadline - time.monotonic()))
            waiting = self.client.secagg_rounds(waiting_for_me=True, wait=wait)
            fresh = [st for st in waiting if st["id"] not in self._seen]
            if waiting and not fresh:  # only rounds refused or left earlier: do not spin on them
                (stop or threading.Event()).wait(wait)
            for st in fresh:
                self._seen.add(st["id"])
                task = st.get("task") or {}
                if task.get("kind") != TASK_KIND or st["stage"] != "advertise_keys":
                    continue  # not federated training, or joined by an earlier run (its keys are gone)
                try:
                    report.joined.append(self.join(st))
                except (PlanRefused, ValueError) as exc:
                    report.refused.append({"round_id": st["id"], "reason": str(exc).splitlines()[0][:200]})
                except ApiError as exc:
                    report.joined.append({"round_id": st["id"], "error": exc.code, "message": exc.message})
            if self._finished(rounds):
                break
        report.accepted = list(self._accepted.values())
        return report

    def _finished(self, rounds: int | None) -> bool:
        """``rounds`` contributions made in this run, or every plan of this run has had all its rounds."""
        if rounds is not None:
            return self._run_contributions >= rounds
        return bool(self._active) and all(len(self.contributed(pid)) >= self._ledger[pid]["rounds"]
                                          for pid in self._active)


# --- the coordinator ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RoundRecord:
    """One training round as the coordinator saw it."""

    index: int
    round_id: str
    survivors: tuple[str, ...]
    aborted: str | None = None
    noisy_rows: float | None = None

    def as_dict(self, plan: FederatedPlan) -> dict[str, Any]:
        out: dict[str, Any] = {"round": self.index, "round_id": self.round_id, "survivors": list(self.survivors)}
        if self.aborted is not None:
            out["aborted"] = self.aborted
        else:
            out["noise_std_per_coordinate"] = plan.central_std(len(self.survivors))
            out["noisy_rows"] = self.noisy_rows
        return out


@dataclass
class FederatedModel:
    """The averaged model after the released rounds, with its plan and per-round record."""

    plan: FederatedPlan
    weights: NDArray[np.float64]
    rounds: list[RoundRecord]

    @property
    def released(self) -> int:
        return sum(r.aborted is None for r in self.rounds)

    def predict_proba(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """P(positive class) for encoded rows with their bias column (`load_rows`)."""
        return _sigmoid(x @ self.weights)

    def card(self) -> dict[str, Any]:
        plan = self.plan
        g = plan.guarantee(self.released)
        return {
            "model": "logistic_regression",
            "training": "federated DP Newton over secure aggregation (veilbox.federated)",
            "plan_id": plan.plan_id,
            "features": [*plan.encoding.feature_names, "bias"],
            "weights": [float(v) for v in self.weights],
            "encoding": plan.encoding.model_dump(mode="json"),
            "label": plan.encoding.label,
            "positive_class": plan.encoding.positive_class,
            "holders": list(plan.holders),
            "threshold": plan.threshold,
            "privacy": {
                "epsilon": g.epsilon, "delta": g.delta, "rho": g.rho,
                "rounds_released": self.released, "rounds_planned": plan.rounds,
                "epsilon_if_all_rounds": plan.guarantee().epsilon, "rho_per_round": plan.rho_round(),
                "unit": "one row of one holder's data (add or remove)",
                "mechanism": "distributed discrete Gaussian (OpenDP sampler), per-holder scale sigma_local, "
                             "noise scaled for the threshold (only t survivors assumed)",
                "sigma_local": plan.sigma_local, "gamma": plan.gamma,
                "integer_sensitivity": plan.integer_sensitivity, "row_sensitivity": plan.row_sensitivity,
                "accountant": "zCDP, Kairouz-Liu-Steinke 2021 Prop. 14; (eps, delta) by Canonne-Kamath-Steinke "
                              "2020 Cor. 13",
            },
            "rounds": [r.as_dict(plan) for r in self.rounds],
        }


class Coordinator:
    """The operator's side: opens one secure-aggregation round per training round and updates the model."""

    def __init__(self, client: Client, agreement_id: str, plan: FederatedPlan, *, stage_timeout_s: float = 120.0,
                 round_timeout_s: float = 1800.0) -> None:
        self.client, self.agreement_id, self.plan = client, agreement_id, plan
        self.stage_timeout_s, self.round_timeout_s = stage_timeout_s, round_timeout_s

    def task(self, index: int, weights: NDArray[np.float64]) -> dict[str, Any]:
        return {"kind": TASK_KIND, "plan": self.plan.model_dump(mode="json"), "round": index,
                "weights": [float(v) for v in weights]}

    def train(self, progress: Callable[[RoundRecord, NDArray[np.float64]], None] | None = None) -> FederatedModel:
        plan = self.plan
        w = np.zeros(plan.dim)
        records: list[RoundRecord] = []
        for index in range(plan.rounds):
            st = self.client.secagg_open(self.agreement_id, list(plan.holders), plan.threshold, plan.vector_length,
                                         stage_timeout_s=self.stage_timeout_s, task=self.task(index, w))
            record, total = self._collect(index, st["id"])
            if total is not None:
                values = decode_words(plan, total)
                d, hl = plan.dim, plan.dim * (plan.dim + 1) // 2
                h = np.zeros((d, d))
                h[np.triu_indices(d)] = values[d:d + hl]
                h = h + h.T - np.diag(np.diag(h))
                count = float(values[-1])
                record = RoundRecord(index, st["id"], record.survivors, noisy_rows=count)
                w = _newton_step(w, values[:d], h, count, plan.ridge, plan.step)
            records.append(record)
            if progress is not None:
                progress(record, w)
        return FederatedModel(plan, w, records)

    def _collect(self, index: int, round_id: str) -> tuple[RoundRecord, NDArray[np.uint32] | None]:
        deadline = time.monotonic() + self.round_timeout_s
        while time.monotonic() < deadline:
            try:
                result = self.client.secagg_result(round_id, wait=min(LONG_POLL_S, deadline - time.monotonic()))
            except ApiError as exc:
                if exc.code == "INVALID_REQUEST":  # the round aborted: nothing was released
                    return RoundRecord(index, round_id, (), aborted=exc.message), None
                raise
            if result["ready"]:
                return RoundRecord(index, round_id, tuple(result["survivors"])), decode_sum(result)
        raise TimeoutError(f"round {round_id} did not finish in time")
