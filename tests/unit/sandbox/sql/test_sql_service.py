"""The facade end to end on a registered dataset: noisy answers, public keys, suppression, cost, preview."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from catalog.errors import INTERNAL, INVALID_REQUEST, DomainError
from catalog.mock import mock_table
from sandbox import QueryWorker, TableView, prepare, preview, run

ATTACKS = Path(__file__).resolve().parents[3] / "data" / "attacks"


def allowed_corpus() -> list[dict[str, Any]]:
    path = ATTACKS / "sql_allowed.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def agg_values(result: Any, plan: Any) -> list[Any]:
    cols = [i for i, o in enumerate(plan.query.outputs) if o.kind == "agg"]
    return [row[i] for row in result.rows for i in cols]


@pytest.mark.parametrize("case", allowed_corpus(), ids=[c["name"] for c in allowed_corpus()])
def test_allowed_corpus_is_answered_with_noise(case: dict, tables: dict, worker: QueryWorker,
                                               exact: Any) -> None:
    assert case["expect"] == "noised"
    plan = prepare(case["sql"], tables, epsilon=0.05, delta=0, min_group_units=0)
    assert plan.cost == (Fraction(1, 20), Fraction(0))
    truth = exact(case["sql"])
    differs = False
    for _ in range(3):
        res = run(plan, worker)
        assert res.columns == plan.columns
        assert res.cost == {"epsilon": 0.05, "delta": 0.0}
        assert res.output_digest.startswith("sha256:") and len(res.output_digest) == 71
        assert set(res.error_bars) == {o.name for o in plan.query.outputs if o.kind == "agg"}
        assert len(res.rows) + res.suppressed_groups == len(plan.keys.rows)
        released = sorted(map(repr, agg_values(res, plan)))
        true_aggs = sorted(repr(v) for row in truth for v in row[len(row) - len(agg_values(res, plan)[:1]):])
        differs |= released != true_aggs
    assert differs, "three runs reproduced the exact answer: no noise?"


def test_released_values_are_close_to_the_truth(tables: dict, worker: QueryWorker, exact: Any) -> None:
    plan = prepare("SELECT district, COUNT(*) AS n, AVG(monthly_income) AS a FROM tax_income GROUP BY district",
                   tables, epsilon=5, min_group_units=20)
    res = run(plan, worker)
    truth = {d: (n, a) for d, n, a in exact(
        "SELECT district, COUNT(*), AVG(monthly_income) FROM tax_income GROUP BY district")}
    assert len(res.rows) == 7
    for (d, n, a), bar in zip(res.rows, res.error_bars["a"], strict=True):
        assert abs(n - truth[d][0]) <= 10 * res.error_bars["n"] + 1
        assert abs(a - truth[d][1]) <= 10 * bar + 1
        assert isinstance(n, int) and isinstance(a, float)


def test_public_keys_include_absent_groups(tables: dict, worker: QueryWorker) -> None:
    plan = prepare("SELECT FLOOR(age / 10) * 10 AS band, COUNT(*) AS n FROM tax_income WHERE age < 30 "
                   "GROUP BY band", tables, epsilon=1, min_group_units=0)
    assert [k[0] for k in plan.keys.rows] == [10.0 * i for i in range(1, 11)]
    res = run(plan, worker)
    assert [r[0] for r in res.rows] == [10.0 * i for i in range(1, 11)]  # bands 30..100 hold noisy zeros
    assert all(r[1] < 60 for r in res.rows[2:])


def test_histogram_over_measure_bounds(tables: dict, worker: QueryWorker) -> None:
    plan = prepare("SELECT FLOOR(monthly_income / 200) AS bucket, COUNT(*) AS n FROM tax_income GROUP BY bucket",
                   tables, epsilon=1, min_group_units=5)
    assert len(plan.keys.rows) == 1001
    res = run(plan, worker)
    assert len(res.rows) + res.suppressed_groups == 1001
    assert res.suppressed_groups > 500  # incomes above ~50k are rare: their buckets are withheld


def test_suppression_counts_withheld_groups(tables: dict, worker: QueryWorker) -> None:
    plan = prepare("SELECT age, COUNT(*) AS n FROM tax_income GROUP BY age", tables, epsilon=1, min_group_units=50)
    res = run(plan, worker)
    assert len(plan.keys.rows) == 85
    assert res.suppressed_groups >= 20  # ages 16-17 and 76-100 are empty in the synthetic data
    assert all(n >= 0 for _, n in res.rows)


def test_having_order_limit_apply_to_released_values(tables: dict, worker: QueryWorker) -> None:
    plan = prepare("SELECT industry, COUNT(*) AS n FROM tax_income GROUP BY industry HAVING COUNT(*) > 1500 "
                   "ORDER BY n DESC LIMIT 3", tables, epsilon=2, min_group_units=20)
    res = run(plan, worker)
    assert 1 <= len(res.rows) <= 3
    ns = [r[1] for r in res.rows]
    assert ns == sorted(ns, reverse=True) and all(n > 1500 for n in ns)
    assert res.rows[0][0] == "manufacturing"


def test_differencing_costs_each_query(tables: dict, worker: QueryWorker, exact: Any) -> None:
    eps = Fraction(1, 10)
    le = prepare("SELECT COUNT(*) AS n FROM tax_income WHERE age <= 40", tables, epsilon=eps, min_group_units=0)
    lt = prepare("SELECT COUNT(*) AS n FROM tax_income WHERE age < 40", tables, epsilon=eps, min_group_units=0)
    assert le.cost == (eps, 0) and lt.cost == (eps, 0)
    true_diff = exact("SELECT COUNT(*) FROM tax_income WHERE age = 40")[0][0]
    diffs = [run(le, worker).rows[0][0] - run(lt, worker).rows[0][0] for _ in range(20)]
    assert statistics.pstdev(diffs) > 5  # each answer carries scale-10 noise: the difference is noisy
    assert sum(d == true_diff for d in diffs) < 10


def test_unit_count_is_shared_with_count_star(tables: dict) -> None:
    plan = prepare("SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district", tables, epsilon=1,
                   min_group_units=20)
    assert len(plan.mechanisms) == 1 and plan.mechanisms[0].epsilon == 1
    avg = prepare("SELECT district, AVG(monthly_income) AS a FROM tax_income GROUP BY district", tables,
                  epsilon=Fraction(3, 2), min_group_units=20)
    assert len(avg.mechanisms) == 3  # noisy SUM, noisy COUNT(x), unit count
    assert avg.cost == (Fraction(3, 2), 0)
    assert all(m.epsilon == Fraction(1, 2) for m in avg.mechanisms)
    no_suppression = prepare("SELECT SUM(tax_paid) AS t FROM tax_income", tables, epsilon=1, min_group_units=0)
    assert len(no_suppression.mechanisms) == 1 and no_suppression.canonical.unit_vector is None
    sums = [v for v in avg.canonical.vectors if v.kind == "sum"]
    assert sums[0].sensitivity == 2_000_000 and sums[0].granularity == Fraction(1, 10)


def test_cost_is_exact_for_decimal_input(tables: dict) -> None:
    plan = prepare("SELECT COUNT(*) FROM tax_income", tables, epsilon=0.1, delta=1e-6, min_group_units=0)
    assert plan.cost == (Fraction(1, 10), Fraction(0))
    for bad in (0, -1, 1000, float("nan")):
        with pytest.raises(DomainError) as info:
            prepare("SELECT COUNT(*) FROM tax_income", tables, epsilon=bad)
        assert info.value.code == INVALID_REQUEST


def test_preview_spends_nothing_and_shows_the_canonical_sql(tables: dict) -> None:
    plan = prepare("SELECT district, SUM(tax_paid) AS t FROM tax_income WHERE age BETWEEN 30 AND 39 "
                   "GROUP BY district", tables, epsilon=1, min_group_units=5)
    view: TableView = tables["tax_income"]
    mock = mock_table("tax_income", view.dataset.columns, rows=500)
    out = preview(plan, {"tax_income": mock})
    assert set(out) == {"canonical_sql", "cost", "expected_error", "mock_result"}
    assert out["canonical_sql"] == plan.canonical_sql
    assert "QUALIFY ROW_NUMBER() OVER (PARTITION BY \"person_id\"" in out["canonical_sql"]
    assert "$salt" in out["canonical_sql"]  # tax_paid was clamped at ingest: read as DOUBLE, not clamped again
    assert 'SUM(CAST(ROUND((CAST("tax_paid" AS DOUBLE)) / ' in out["canonical_sql"]
    assert out["cost"] == {"epsilon": 1.0, "delta": 0.0}
    assert out["expected_error"]["t"] > 0
    assert out["mock_result"]["columns"] == ["district", "t"]
    assert len(out["mock_result"]["rows"]) + out["mock_result"]["suppressed_groups"] == 7
    assert preview(plan)["mock_result"]["columns"] == ["district", "t"]  # mock generated from declarations


def test_latency_is_padded_to_buckets(tables: dict, worker: QueryWorker, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's duration is rounded up to the next bucket (a fake clock: no wall-clock assertion)."""
    from types import SimpleNamespace

    from sandbox.sql import service

    ticks = iter([100.0, 100.07])  # start, then after the run: 70 ms elapsed
    slept: list[float] = []
    monkeypatch.setattr(service, "time", SimpleNamespace(monotonic=lambda: next(ticks), sleep=slept.append))
    plan = prepare("SELECT COUNT(*) FROM tax_income", tables, epsilon=1)
    run(plan, worker, latency_bucket_ms=250)
    assert len(slept) == 1 and math.isclose(slept[0], 0.18, abs_tol=1e-9)


def test_engine_failures_are_released_over_an_empty_input(tables: dict, worker: QueryWorker) -> None:
    """A residual engine failure is never raised: the answer is the release over an empty input (same columns,
    keys, suppression and error bars as any answer), and only ``incident`` — never part of the body — says so."""
    plan = prepare("SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district", tables, epsilon=1,
                   min_group_units=0)
    broken = dataclasses.replace(plan, canonical=dataclasses.replace(
        plan.canonical, sql="SELECT error('secret engine text 42')",
        unbounded_sql="SELECT error('secret engine text 42')"))
    res = run(broken, worker)
    normal = run(plan, worker)  # the worker survives
    assert res.incident == "engine.engine" and normal.incident is None
    body = res.as_dict()
    assert set(body) == set(normal.as_dict()) and "secret" not in json.dumps(body)
    assert body["columns"] == normal.columns and body["error_bars"] == normal.error_bars
    assert [r[0] for r in res.rows] == [r[0] for r in normal.rows]  # every public key, no suppression here
    assert max(abs(r[1]) for r in res.rows) < 100 < min(r[1] for r in normal.rows)  # noise around zero


def test_a_worker_that_cannot_start_raises_before_sending(tables: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from sandbox.engine.worker import EngineFailure

    plan = prepare("SELECT COUNT(*) FROM tax_income", tables, epsilon=1)
    sent: list[Any] = []

    class Dead:
        def start(self) -> None:
            raise EngineFailure("unavailable")

        def execute(self, request: Any) -> None:
            sent.append(request)

    with pytest.raises(DomainError) as info:
        run(plan, Dead())  # type: ignore[arg-type]
    assert info.value.code == INTERNAL and info.value.details == [{"reason": "worker.unavailable_before_read"}]
    assert sent == []


@pytest.mark.parametrize("eps", [5e-324, "1e-400", Fraction(1, 10**300), "1e-40", 1e-20])
def test_an_epsilon_too_small_to_calibrate_is_an_invalid_request(tables: dict, eps: Any) -> None:
    """Refused when parsed (more digits than an exact amount may have) or when calibrated (a noise scale beyond
    `MAX_SCALE`): never an ``OverflowError``."""
    with pytest.raises(DomainError) as info:
        prepare("SELECT SUM(tax_paid) AS t FROM tax_income", tables, epsilon=eps)
    assert info.value.code == INVALID_REQUEST and "epsilon" in info.value.message + json.dumps(info.value.details)


def test_per_unit_bounding(register_units: Any) -> None:
    one = register_units("dup_units_m1", 200, 3, 1)
    two = register_units("dup_units_m2", 200, 3, 2)
    with QueryWorker({one.name: one.path, two.name: two.path}, threads=1, memory_limit="256MB",
                     timeout_s=60) as w:
        for ds, m in ((one, 1), (two, 2)):
            tv = {ds.name: TableView(ds, frozenset({"region", "amount"}))}
            plan = prepare(f"SELECT COUNT(*) AS n, SUM(amount) AS s FROM {ds.name}", tv, epsilon=60)
            assert "QUALIFY" in plan.canonical_sql
            n, s = run(plan, w).rows[0]
            assert abs(n - 200 * m) <= 15  # 600 raw rows, bounded to m per unit
            assert abs(s - 2000 * m) <= 100 * m + 200
            grouped = prepare(f"SELECT region, COUNT(DISTINCT uid) AS u FROM {ds.name} GROUP BY region", tv,
                              epsilon=60)
            units = [v for v in grouped.canonical.vectors if "DISTINCT" in v.sql or v.sql == "COUNT(*)"]
            assert [v.sensitivity for v in units] == [m]
            assert len(run(grouped, w).rows) == 2


#: False-failure probability allowed to each exact binomial check of the noise distribution below.
NOISE_ALPHA = 1e-7


def _binomial_acceptance(n: int, p: float, alpha: float) -> tuple[int, int]:
    """``(lo, hi)`` with ``P(X < lo) + P(X > hi) <= alpha`` for ``X ~ Binomial(n, p)``: exact tails, each at most
    ``alpha / 2``, summed from the probability mass function in log space (no normal approximation)."""
    log_pmf = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
               + (k * math.log(p) if k else 0.0) + ((n - k) * math.log1p(-p) if n - k else 0.0)
               for k in range(n + 1)]
    pmf = [math.exp(v) for v in log_pmf]
    lo, acc = 0, 0.0
    while lo <= n and acc + pmf[lo] <= alpha / 2:
        acc += pmf[lo]
        lo += 1
    hi, acc = n, 0.0
    while hi >= 0 and acc + pmf[hi] <= alpha / 2:
        acc += pmf[hi]
        hi -= 1
    return lo, hi


def test_noisy_count_error_matches_the_analytic_scale(tables: dict, worker: QueryWorker, exact: Any) -> None:
    """The released count's error is discrete Laplace of the plan's scale, centred on the truth.

    Three exact binomial checks on ``N`` independent releases, each failing falsely with probability at most
    ``NOISE_ALPHA`` (so the test as a whole at most 3e-7): the share of errors with ``|e| <= scale`` and the
    share within the published 95 % half-width, against their exact probabilities ``1 - 2q^k/(1+q)`` with
    ``q = e^(-1/scale)`` (``P(|X| >= k)`` of the discrete Laplace), and the signs of the non-zero errors
    (a fair coin when the noise is unbiased). With ``N = 1500`` a noise scale off by a factor 1.5 or 2/3 fails
    the first check with probability above 0.999, a factor 1.25 or 0.8 with probability about 0.9; a sample
    standard deviation within a fixed ±15 % is no such bound (the discrete Laplace's heavy tails put a 400-draw
    sample sd outside it about once in 130 runs, measured over 20 000 samples of the sampler)."""
    plan = prepare("SELECT COUNT(*) AS n FROM tax_income WHERE gender = 'F'", tables, epsilon=Fraction(1, 4))
    truth = exact("SELECT COUNT(*) FROM tax_income WHERE gender = 'F'")[0][0]
    n = 1500
    errors = [run(plan, worker).rows[0][0] - truth for _ in range(n)]
    mech = plan.mechanisms[0]
    assert mech.scale == pytest.approx(4.0)  # sensitivity 1 (one row per unit), epsilon 1/4
    q = math.exp(-1.0 / mech.scale)

    def inside(k: int) -> float:  # P(|X| < k) for k >= 1
        return 1.0 - 2.0 * q**k / (1.0 + q)

    k_mid = math.floor(mech.scale) + 1  # |e| <= scale: probability about 0.68, where the check is most sensitive
    lo, hi = _binomial_acceptance(n, inside(k_mid), NOISE_ALPHA)
    assert lo <= sum(abs(e) < k_mid for e in errors) <= hi, (lo, hi)
    half = plan.expected_error()["n"]
    assert inside(math.ceil(half)) >= 0.95  # the published half-width is a true 95 % interval of this noise
    lo, hi = _binomial_acceptance(n, inside(math.ceil(half)), NOISE_ALPHA)
    assert lo <= sum(abs(e) < half for e in errors) <= hi, (lo, hi)
    signed = [e for e in errors if e != 0]
    lo, hi = _binomial_acceptance(len(signed), 0.5, NOISE_ALPHA)
    assert lo <= sum(e > 0 for e in signed) <= hi, (lo, hi)
