"""Federated DP training, the client roles: holders keep their Parquet; the operator learns from noisy sums.

Several holders (banks, bureaus) each hold rows of the same public schema. The operator's `Coordinator` opens one
secure-aggregation round per training round (`gateway.services.rounds`) under its agreement, with a public task: the
`FederatedPlan` and the current weights. Each `Holder` computes its contribution on its own machine, adds its share
of the noise and joins the round (`veilbox.secagg_client.join_round`, masking by `mpc.secagg`); the coordinator
receives only the sum, decodes it into a noisy gradient, Hessian and row count and takes one damped Newton step.

The mechanism — the plan, its sensitivity, the clipping, quantisation and discrete Gaussian noise of a
contribution, the zCDP accounting and the σ calibration — is not here: it is `sandbox.federated` (with its
samplers and conversions in `sandbox.dp`), the code the data owner reviews and the gateway checks each round's
task against before it opens. This module only calls it; `FederatedPlan` and `encoding_from_declaration` are
re-exported for the coordinator's convenience.

What each party sees: the gateway sees masked vectors (uniform) and releases the noisy sum to the operator only;
the operator sees the noisy sums, the survivor lists and nothing per holder; holders see the public plan and the
weights (post-processing of earlier releases).

Holders do not trust the coordinator (nor the gateway) with their privacy: before joining a round a holder
recomputes the plan's guarantee from its parameters and refuses a plan that, with everything it contributed to
earlier plans (its ledger; zCDP adds up, converted by `sandbox.dp.zcdp`), would exceed its own lifetime ε cap, a
δ above its cap, a plan other than the one it pinned by digest, a round whose participants or threshold differ from
the plan, a changed plan, a repeated round index and any round beyond the plan's count. A `Holder` needs a lifetime
ε cap or a pinned plan digest (else it refuses to start: a plan id alone fixes nothing about ε), and reports each
plan it accepts (`HolderReport.accepted`, ``on_accept``). A plan's digest is the home suite's hash (``sha256:`` in
an ``intl`` home, ``sm3:`` in an ``sm`` home): a holder learns it from the home (`home_hash_alg`, the published
key's ``hash_alg``) when it starts answering rounds, unless it is given ``hash_alg``.

The guarantee, the unit of privacy and the known limits: `sandbox.federated` and docs/mechanisms/federated.md.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from catalog.fingerprint import HashAlg
from mpc.secagg import RoundAborted, RoundConfig, Stage
from sandbox.dp.zcdp import zcdp_epsilon
from sandbox.federated import (
    MODULUS_BITS,
    TASK_KIND,
    FederatedPlan,
    contribution_sum,
    decode_words,
    encoding_from_declaration,
    noisy_words,
    sigmoid,
)
from sandbox.train.encoding import FeatureEncoding
from veilbox.client import ApiError, Client
from veilbox.secagg_client import decode_sum, join_round, round_config

__all__ = [
    "Coordinator",
    "FederatedModel",
    "FederatedPlan",
    "Holder",
    "HolderReport",
    "PlanRefused",
    "RoundRecord",
    "encoding_from_declaration",
    "evaluate",
    "load_rows",
    "train_central",
]

LONG_POLL_S = 25.0


class PlanRefused(ValueError):
    """A holder refuses a plan or a round (the reason says which check failed)."""


# --- rows, model and metrics ----------------------------------------------------------------------------------------

def load_rows(data: Path | pa.Table, encoding: FeatureEncoding) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Encoded rows with a trailing bias column, and 0/1 labels (rows with a missing label are dropped)."""
    table = data if isinstance(data, pa.Table) else pq.read_table(data, columns=[*encoding.columns, encoding.label])
    x = encoding.encode_batch(table).astype(np.float64)
    y, usable = encoding.encode_label(table)
    x = np.hstack([x[usable], np.ones((int(usable.sum()), 1))])
    return x, y[usable].astype(np.float64)


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
        p = sigmoid(x @ w)
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


@dataclass
class HolderReport:
    """What a holder did: the rounds it joined (and how far), and what it refused and why."""

    name: str
    joined: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)  # `FederatedPlan.summary` of each plan accepted


def home_hash_alg(client: Client) -> HashAlg:
    """The home suite's hash (``sha256`` or ``sm3``), as its published signing key names it
    (``GET /v1/audit/public-key``)."""
    alg = client.audit_public_key().get("hash_alg")
    if alg == "sm3":
        return "sm3"
    if alg == "sha256":
        return "sha256"
    raise ValueError(f"the home names an unknown hash {alg!r}")


class Holder:
    """A data holder outside the domain: answers the federated rounds it is invited to, from its own Parquet."""

    def __init__(self, client: Client, data: Path | pa.Table, *, name: str | None = None,
                 max_epsilon: float | None = None, max_delta: float | None = None, plan_id: str | None = None,
                 plan_digest: str | None = None, ledger: Path | None = None,
                 dropouts: Mapping[int, Stage] | None = None,
                 on_accept: Callable[[FederatedPlan], None] | None = None,
                 hash_alg: HashAlg | None = None) -> None:
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
        # the home suite's hash names plans: given, or learnt from the home when `run` starts (sha256 until then)
        self.hash_alg: HashAlg = hash_alg or "sha256"
        self._learn_hash = hash_alg is None
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
        entry = self._ledger.setdefault(plan.plan_id, {"digest": plan.digest(self.hash_alg), "rounds": plan.rounds,
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
        if self.plan_digest is not None and plan.digest(self.hash_alg) != self.plan_digest:
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
        if entry is not None and entry["digest"] != plan.digest(self.hash_alg):
            raise PlanRefused("the plan changed after this holder first contributed to it")
        done = set(self.contributed(plan.plan_id))
        if index in done or not 0 <= index < plan.rounds or len(done) >= plan.rounds:
            raise PlanRefused("the round index is repeated or beyond the plan's rounds")
        if not plan.gives_stated_epsilon():
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
            self._accepted[plan.plan_id] = plan.summary(self.hash_alg)
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
        if self._learn_hash:
            self.hash_alg, self._learn_hash = home_hash_alg(self.client), False
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
        return sigmoid(x @ self.weights)

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
