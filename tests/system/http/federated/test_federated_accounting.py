"""The federated mechanism's numbers (`sandbox.federated`, `sandbox.dp.zcdp`): zCDP → (ε, δ) against OpenDP, the
distributed discrete Gaussian bound, the calibration, the per-row sensitivity, the noise actually added, the
gateway's check of a round's task, and the holder's checks of a plan (`veilbox.federated`)."""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import opendp.prelude as dp
import pyarrow as pa
import pytest
from pydantic import ValidationError

from mpc.secagg import new_round
from sandbox.dp.samplers import DiscreteGaussian
from sandbox.dp.zcdp import ddg_rho, zcdp_delta, zcdp_epsilon
from sandbox.federated import FederatedPlan, contribution_sum, decode_words, noisy_words, task_problems
from sandbox.train import FeatureEncoding
from veilbox.client import Client
from veilbox.federated import Holder, PlanRefused, load_rows

HOLDERS = ("bank-north", "bank-south", "bank-east", "bank-west", "bank-centre")

dp.enable_features("contrib")


def exact_dg_variance(sigma: float) -> float:
    """Var of N_Z(0, σ²) by direct summation (its support is symmetric and its mean 0)."""
    k = np.arange(-int(40 * sigma) - 10, int(40 * sigma) + 11, dtype=np.float64)
    w = np.exp(-(k**2) / (2 * sigma**2))
    return float((w * k**2).sum() / w.sum())


@pytest.mark.parametrize("rho", [0.001, 0.01, 0.1, 1.0, 5.0])
@pytest.mark.parametrize("delta", [1e-5, 1e-9])
def test_zcdp_to_approx_dp_matches_opendp(rho: float, delta: float) -> None:
    scale = 1 / math.sqrt(2 * rho)  # N(0, scale²) on sensitivity 1 is rho-zCDP
    meas = dp.m.make_gaussian(dp.vector_domain(dp.atom_domain(T="i64")), dp.l2_distance(T="i64"), scale=scale)
    ours = zcdp_epsilon(rho, delta)
    theirs = dp.c.make_zCDP_to_approxDP(meas).map(1).epsilon(delta)
    assert ours == pytest.approx(theirs, rel=1e-6)
    assert zcdp_delta(rho, ours) <= delta
    assert ours <= rho + 2 * math.sqrt(rho * math.log(1 / delta))  # never worse than Bun–Steinke


def test_the_distributed_discrete_gaussian_bound() -> None:
    # one summand, no tau: rho = Δ²/(2σ²)
    assert ddg_rho(10, 5, 1, 1) == pytest.approx(2.0)
    # tau pinned: σ = 1/2, two summands: 10·exp(−2π²·¼·½)
    tau = 10 * math.exp(-(math.pi**2) / 4)
    assert ddg_rho(1, 0.5, 2, 4) == pytest.approx(0.5 * (1 / (math.sqrt(2) * 0.5) + tau * 2) ** 2)
    with pytest.raises(ValueError):
        ddg_rho(1, 0.4, 2, 1)
    # more summands (more survivors) → more total noise → smaller rho
    rhos = [ddg_rho(100, 30, m, 50) for m in range(1, 8)]
    assert rhos == sorted(rhos, reverse=True)


@pytest.mark.parametrize("epsilon", [0.5, 2.0, 8.0])
def test_calibration_meets_the_target_and_no_less_noise_would(encoding: FeatureEncoding, epsilon: float) -> None:
    plan = FederatedPlan.calibrate(encoding, HOLDERS, 3, 4, epsilon, 1e-5)
    g = plan.guarantee()
    assert g.epsilon <= epsilon and g.epsilon == pytest.approx(epsilon, rel=1e-3)
    assert g.rho == pytest.approx(4 * plan.rho_round())
    weaker = FederatedPlan.model_validate({**plan.model_dump(), "sigma_local": plan.sigma_local * 0.99})
    assert weaker.guarantee().epsilon > epsilon
    # the round's cost is the threshold's: the noise of t holders must cover it
    tau_free = 0.5 * (plan.integer_sensitivity / (math.sqrt(3) * plan.sigma_local)) ** 2
    assert plan.rho_round() == pytest.approx(tau_free, rel=1e-9)
    # dropouts: fewer survivors, less noise in the sum (never fewer than t: the round aborts)
    assert plan.central_std(3) < plan.central_std(4) < plan.central_std(5)
    assert plan.guarantee(2).epsilon < g.epsilon  # fewer released rounds cost less


def test_plans_refuse_what_the_modulus_cannot_hold(encoding: FeatureEncoding) -> None:
    plan = FederatedPlan.calibrate(encoding, HOLDERS, 3, 4, 2.0, 1e-5)
    with pytest.raises(ValidationError):
        FederatedPlan.model_validate({**plan.model_dump(), "max_rows_per_holder": 10**9})
    with pytest.raises(ValidationError):
        FederatedPlan.model_validate({**plan.model_dump(), "threshold": 2})  # not a strict majority of 5


def test_a_plan_is_never_aimed_at_one_or_two_holders(encoding: FeatureEncoding) -> None:
    plan = FederatedPlan.calibrate(encoding, HOLDERS, 3, 4, 2.0, 1e-5)
    for holders, threshold in ((["a", "b"], 2), (["a", "b", "c"], 2), (["a", "b", "c", "d"], 2)):
        with pytest.raises(ValidationError, match="at least 3"):
            FederatedPlan.model_validate({**plan.model_dump(), "holders": holders, "threshold": threshold})
    FederatedPlan.model_validate({**plan.model_dump(), "holders": ["a", "b", "c"], "threshold": 3})


def test_a_holder_needs_a_cap_or_a_pinned_plan(encoding: FeatureEncoding, holder_tables: Any) -> None:
    table = holder_tables[HOLDERS[0]]
    for kw in ({}, {"plan_id": "fp-anything"}, {"max_delta": 1e-6}):
        with pytest.raises(ValueError, match="lifetime ε cap"):
            Holder(cast(Client, None), table, name=HOLDERS[0], **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        Holder(cast(Client, None), table, name=HOLDERS[0], max_epsilon=float("nan"))
    plan, pinned = plan_and_holder(encoding, table, plan_digest="sha256:" + "0" * 64)
    with pytest.raises(PlanRefused, match="pinned"):
        pinned.check_plan(plan, config_for(plan), 0)
    _, pinned = plan_and_holder(encoding, table, plan_digest=plan.digest())
    pinned.check_plan(plan, config_for(plan), 0)  # the very plan it pinned, whatever its ε
    summary = plan.summary()
    assert summary["digest"] == plan.digest() and summary["holders"] == list(HOLDERS)
    assert summary["epsilon"] == pytest.approx(plan.guarantee().epsilon) and summary["threshold"] == 3


def test_distributed_noise_shares_sum_to_the_expected_variance() -> None:
    sigma, holders, n = 12.5, 3, 30_000
    total = sum(np.asarray(DiscreteGaussian(sigma).noise(n), dtype=np.int64) for _ in range(holders))
    assert isinstance(total, np.ndarray) and total.shape == (n,)
    expected = holders * exact_dg_variance(sigma)
    assert expected == pytest.approx(holders * sigma**2, rel=1e-6)  # σ ≥ 1: the discrete variance is σ²
    assert float(np.var(total)) == pytest.approx(expected, rel=0.05)  # ~6 standard errors
    assert abs(float(np.mean(total))) < 5 * math.sqrt(expected / n)


def test_each_row_moves_the_sum_by_at_most_the_sensitivity(encoding: FeatureEncoding, holder_tables: Any) -> None:
    plan = FederatedPlan.calibrate(encoding, HOLDERS, 3, 4, 2.0, 1e-5)
    x, y = load_rows(next(iter(holder_tables.values())), encoding)
    extreme = np.ones((1, plan.dim)) * 5.0  # a malformed row far outside the encoding: clipped to ‖x‖ ≤ B
    corner = np.concatenate([np.ones(3), np.eye(plan.dim - 4)[0], [1.0]])[None, : plan.dim]
    worst = 0.0
    for w in (np.zeros(plan.dim), np.full(plan.dim, 3.0), np.full(plan.dim, -3.0)):
        base = contribution_sum(plan, x, y, w)
        for row, label in ((extreme, 1.0), (corner, 0.0), (x[:1], y[0])):
            bigger = contribution_sum(plan, np.vstack([x, row]), np.append(y, label), w)
            worst = max(worst, float(np.linalg.norm(bigger - base)))
    assert worst <= plan.row_sensitivity * (1 + 1e-9)


def test_the_released_noise_matches_the_accountant(encoding: FeatureEncoding, holder_tables: Any) -> None:
    plan = FederatedPlan.calibrate(encoding, HOLDERS, 3, 4, 2.0, 1e-5)
    rows = [load_rows(t, encoding) for t in list(holder_tables.values())[:4]]  # four survivors
    w = np.zeros(plan.dim)
    exact = sum(contribution_sum(plan, x, y, w) for x, y in rows)
    errors = []
    for _ in range(40):
        words = sum(noisy_words(plan, contribution_sum(plan, x, y, w)).astype(np.uint64) for x, y in rows)
        errors.append(decode_words(plan, (words % (1 << 32)).astype(np.uint32)) - exact)
    err = np.concatenate(errors)
    # per coordinate: four holders' N_Z(0, σ_l²) plus stochastic rounding (variance ≤ ¼ step² each)
    predicted = plan.central_std(4)
    assert float(np.std(err)) == pytest.approx(predicted, rel=0.08)
    assert abs(float(np.mean(err))) < 5 * predicted / math.sqrt(err.size)


def plan_and_holder(encoding: FeatureEncoding, table: pa.Table, **kw: Any) -> tuple[FederatedPlan, Holder]:
    plan = FederatedPlan.calibrate(encoding, HOLDERS, 3, 2, 2.0, 1e-5, max_rows_per_holder=2000)
    if "plan_digest" not in kw:
        kw.setdefault("max_epsilon", 100.0)  # a holder always has a lifetime cap or a pinned plan
    return plan, Holder(cast(Client, None), table, name=HOLDERS[0], **kw)


def config_for(plan: FederatedPlan, **kw: Any) -> Any:
    args: dict[str, Any] = {"participants": list(plan.holders), "threshold": plan.threshold,
                            "vector_length": plan.vector_length}
    args.update(kw)
    return new_round(**args)


def test_a_holder_refuses_rounds_that_break_the_plan(encoding: FeatureEncoding, holder_tables: Any) -> None:
    table = holder_tables[HOLDERS[0]]
    plan, holder = plan_and_holder(encoding, table)
    ok = config_for(plan)
    holder.check_plan(plan, ok, 0)
    cases: list[tuple[FederatedPlan, Any, int, str]] = [
        (plan, config_for(plan, participants=list(HOLDERS[:4])), 0, "participants differ"),
        (plan, config_for(plan, participants=[*HOLDERS[:4], "sybil"]), 0, "participants differ"),
        (plan, config_for(plan, threshold=3, participants=list(HOLDERS)), 0, ""),  # same threshold: fine
        (plan, config_for(plan, vector_length=plan.vector_length + 1), 0, "layout"),
        (plan, ok, 2, "beyond the plan"),
        (plan, ok, -1, "beyond the plan"),
        (FederatedPlan.model_validate({**plan.model_dump(), "holders": ["a", "b", "c"], "threshold": 3}),
         new_round(["a", "b", "c"], 3, plan.vector_length), 0, "does not name this holder"),
        (FederatedPlan.model_validate({**plan.model_dump(), "sigma_local": plan.sigma_local / 2}), ok, 0,
         "does not give the ε it states"),
    ]
    for p, cfg, index, reason in cases:
        if not reason:
            holder.check_plan(p, cfg, index)
            continue
        with pytest.raises(PlanRefused, match=reason):
            holder.check_plan(p, cfg, index)
    lower_t = FederatedPlan.model_validate({**plan.model_dump(), "threshold": 4})
    with pytest.raises(PlanRefused, match="threshold is below"):
        holder.check_plan(lower_t, config_for(lower_t, threshold=3), 0)


def test_a_holder_keeps_count_and_caps(encoding: FeatureEncoding, holder_tables: Any, tmp_path: Any) -> None:
    table = holder_tables[HOLDERS[0]]
    plan, holder = plan_and_holder(encoding, table, ledger=tmp_path / "ledger.json")
    holder._record(plan, 0)
    with pytest.raises(PlanRefused, match="repeated"):
        holder.check_plan(plan, config_for(plan), 0)
    holder.check_plan(plan, config_for(plan), 1)
    holder._record(plan, 1)
    with pytest.raises(PlanRefused, match="repeated or beyond"):  # every planned round is spent
        holder.check_plan(plan, config_for(plan), 1)
    changed = FederatedPlan.model_validate({**plan.model_dump(), "rounds": 10})
    with pytest.raises(PlanRefused, match="plan changed"):
        holder.check_plan(changed, config_for(changed), 5)
    # the ledger survives a restart of the holder
    again = Holder(cast(Client, None), table, name=HOLDERS[0], max_epsilon=100.0, ledger=tmp_path / "ledger.json")
    assert again.contributed(plan.plan_id) == [0, 1]
    with pytest.raises(PlanRefused):
        again.check_plan(plan, config_for(plan), 1)
    # caps of the holder's own
    _, capped = plan_and_holder(encoding, table, max_epsilon=1.0)
    with pytest.raises(PlanRefused, match="above this holder's cap"):
        capped.check_plan(plan, config_for(plan), 0)
    _, capped = plan_and_holder(encoding, table, max_delta=1e-6)
    with pytest.raises(PlanRefused, match="δ is above"):
        capped.check_plan(plan, config_for(plan), 0)
    _, other = plan_and_holder(encoding, table, plan_id="fp-someone-else")
    with pytest.raises(PlanRefused, match="not the plan"):
        other.check_plan(plan, config_for(plan), 0)
    small = FederatedPlan.model_validate({**plan.model_dump(), "max_rows_per_holder": 10})
    _, h = plan_and_holder(encoding, table)
    with pytest.raises(PlanRefused, match="more rows"):
        h.check_plan(small, config_for(small), 0)
    with pytest.raises(PlanRefused, match="weights"):
        h.contribution(plan, [float("nan")] * plan.dim)


def test_the_holders_cap_counts_every_plan_it_contributed_to(encoding: FeatureEncoding, holder_tables: Any,
                                                             tmp_path: Any) -> None:
    """A coordinator cannot get around a holder's cap by publishing a new plan id: the cap is for a lifetime."""
    table = holder_tables[HOLDERS[0]]
    first = FederatedPlan.calibrate(encoding, HOLDERS, 3, 2, 2.0, 1e-5, max_rows_per_holder=2000)
    second = FederatedPlan.calibrate(encoding, HOLDERS, 3, 2, 2.0, 1e-5, max_rows_per_holder=2000)
    assert first.plan_id != second.plan_id
    # zCDP adds up: two ε=2 plans together are ε≈2.94 at δ=1e-5, one and a half are ε≈2.50
    holder = Holder(cast(Client, None), table, name=HOLDERS[0], max_epsilon=2.7, ledger=tmp_path / "l.json")
    holder.check_plan(first, config_for(first), 0)
    holder.check_plan(second, config_for(second), 0)  # nothing contributed yet: each plan alone fits
    holder._record(first, 0)
    holder.check_plan(first, config_for(first), 1)  # the rest of a plan already counted is fine
    holder.check_plan(second, config_for(second), 0)  # half of the first and all of the second: ε≈2.50
    holder._record(first, 1)
    with pytest.raises(PlanRefused, match="earlier contributions"):
        holder.check_plan(second, config_for(second), 0)
    again = Holder(cast(Client, None), table, name=HOLDERS[0], max_epsilon=2.7, ledger=tmp_path / "l.json")
    with pytest.raises(PlanRefused, match="earlier contributions"):  # and the count survives a restart
        again.check_plan(second, config_for(second), 0)
    roomy = Holder(cast(Client, None), table, name=HOLDERS[0], max_epsilon=3.0, ledger=tmp_path / "l.json")
    roomy.check_plan(second, config_for(second), 0)


def test_the_gateway_check_refuses_tasks_that_do_not_fit_their_plan(encoding: FeatureEncoding) -> None:
    plan = FederatedPlan.calibrate(encoding, HOLDERS, 3, 2, 2.0, 1e-5, max_rows_per_holder=2000)
    task: dict[str, Any] = {"kind": "veilbox.federated-newton/v1", "plan": plan.model_dump(mode="json"), "round": 0,
                            "weights": [0.0] * plan.dim}
    assert task_problems(task, 3, plan.vector_length, 32) == []
    assert task_problems({"kind": "something-else"}, 2, 1, 16) == []  # not federated training: not checked here

    def fields(t: dict[str, Any], threshold: int = 3, length: int = plan.vector_length, bits: int = 32) -> set[str]:
        return {p["field"] for p in task_problems(t, threshold, length, bits)}

    weak = {**plan.model_dump(mode="json"), "sigma_local": plan.sigma_local / 2}
    assert fields({**task, "plan": weak}) == {"task.plan"}
    assert fields({**task, "plan": {"plan_id": "x"}}) == {"task.plan"}
    assert fields({**task, "plan": None}) == {"task.plan"}
    assert fields(task, threshold=2) == {"threshold"}
    assert fields(task, length=plan.vector_length + 1) == {"vector_length"}
    assert fields(task, bits=16) == {"modulus_bits"}
    for index in (2, -1, True, "0", None):
        assert fields({**task, "round": index}) == {"task.round"}
    for weights in ([0.0] * (plan.dim - 1), [float("nan")] * plan.dim, [True] * plan.dim, "0", None):
        assert fields({**task, "weights": weights}) == {"task.weights"}
