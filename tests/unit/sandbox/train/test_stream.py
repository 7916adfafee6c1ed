"""Streaming DP-SGD: exact Poisson memberships by geometric skips, the same statistics and counts as the in-memory
path, bounded passes, and the same reads (sealed at rest, a dataset declared for Spark)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sandbox.train import ResourceLimits, load_linear_weights, parse_spec, plan_training, train
from sandbox.train import runner as runner_mod
from sandbox.train._data import STREAM_ABOVE_ROWS, TrainingStream, read_splits
from sandbox.train.encoding import encoding_for
from sandbox.train.metrics import held_out_counts
from sandbox.train.standardise import fixed_point_sums
from sandbox.train.stream import GridSampler, PassBatches, steps_per_pass
from tests.unit.sandbox.train.test_runner import auc

#: Forces the streaming path on the small fixtures; a buffer of four 512-row batches makes several passes.
STREAMING = ResourceLimits(threads=1, memory_limit="256MB", stream_above_rows=0, stream_buffer_rows=2048)
#: 2 epochs of 16 steps at batch 512 on the 8 000 training rows of ``tax_income``: 8 passes of 4 steps.
LEAN = {"epochs": 2, "batch_size": 512}


def test_grid_sampler_selects_every_cell_independently_with_probability_q():
    q, steps, rows = 0.05, 20, 20_000
    sampler = GridSampler(q, steps, torch.Generator(), draw=512)
    got_rows, got_steps, seen = [], [], 0
    for chunk in (1, 0, 999, 7000, 12_000):  # uneven chunks, as the engine delivers them
        r, s = sampler.take(chunk)
        assert ((0 <= r) & (r < chunk)).all() and ((0 <= s) & (s < steps)).all()
        got_rows.append(r + seen)
        got_steps.append(s)
        seen += chunk
    cells = np.concatenate(got_rows) * steps + np.concatenate(got_steps)
    assert len(np.unique(cells)) == len(cells)  # a cell is selected at most once
    n_cells = rows * steps
    sd = (n_cells * q * (1 - q)) ** 0.5
    assert abs(len(cells) - n_cells * q) < 6 * sd
    per_step = np.bincount(np.concatenate(got_steps), minlength=steps)
    sd_step = (rows * q * (1 - q)) ** 0.5
    assert (np.abs(per_step - rows * q) < 6 * sd_step).all()
    # independence of neighbouring cells: the next cell is selected with probability q as well
    selected = set(cells.tolist())
    follow = sum(1 for c in cells.tolist() if c + 1 in selected and c + 1 < n_cells)
    assert abs(follow - len(cells) * q) < 6 * (len(cells) * q * (1 - q)) ** 0.5
    every = GridSampler(1.0, 3, torch.Generator())
    r, s = every.take(4)
    assert r.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3] and s.tolist() == [0, 1, 2] * 4


def test_pass_batches_group_by_step_and_passes_are_bounded():
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    batches = list(PassBatches.group([x[:2], x[2:]], [np.zeros(2, np.float32), np.ones(3, np.float32)],
                                     [np.array([2, 0]), np.array([2, 2, 0])], 2, 4))
    assert [len(b[0]) for b in batches] == [2, 0, 3, 0]
    np.testing.assert_array_equal(batches[2][0], x[[0, 2, 3]])
    assert steps_per_pass(512, 1 << 18, 10_000) == 512 and steps_per_pass(512, 100, 10) == 1
    assert steps_per_pass(256, 1 << 18, 7) == 7
    assert not ResourceLimits().streams(STREAM_ABOVE_ROWS) and ResourceLimits().streams(STREAM_ABOVE_ROWS + 1)


def test_streaming_run_trains_on_the_same_statistics_and_counts(tax_income, base_spec, tmp_path, monkeypatch):
    """The streamed standardisation sums and held-out counts are exactly the in-memory ones; the model learns."""
    sums, counts = [], []
    real_std, real_counts = runner_mod.release_standardisation, runner_mod.release_counts
    monkeypatch.setattr(runner_mod, "release_standardisation", lambda s1, s2, *a: sums.append((s1, s2))
                        or real_std(s1, s2, *a))
    monkeypatch.setattr(runner_mod, "release_counts", lambda c, h, e: counts.append((c, h)) or real_counts(c, h, e))
    spec = parse_spec({**base_spec, **LEAN})
    plan = plan_training(spec, tax_income.rows)
    result = train(spec, plan, tax_income, tmp_path, limits=STREAMING)
    assert result.card.privacy.steps == plan.steps and result.card.privacy.sample_rate == plan.sample_rate
    enc = encoding_for(spec, tax_income)
    train_split, held = read_splits(tax_income, enc)
    (s1, s2), = sums
    e1, e2 = fixed_point_sums(train_split.x, enc)
    np.testing.assert_array_equal(s1, e1)
    np.testing.assert_array_equal(s2, e2)
    w, b, _ = load_linear_weights(result.weights_path)
    assert auc(held.x @ w + b, held.y) > 0.7
    (cells, hist), = counts
    want_cells, want_hist = held_out_counts(held.x @ w + b, held.y)
    assert cells.sum() == hist.sum() == held.rows
    assert np.abs(cells - want_cells).sum() <= 4 and np.abs(hist - want_hist).sum() <= 4  # float32 vs float64


def test_the_path_is_chosen_by_the_registered_row_count(tax_income, base_spec, tmp_path, monkeypatch):
    class Streamed(Exception):
        pass

    def refuse(*_a, **_k):
        raise Streamed

    monkeypatch.setattr(runner_mod, "_train_streaming", refuse)
    monkeypatch.setattr(runner_mod, "_train_in_memory", refuse)
    spec = parse_spec({**base_spec, **LEAN})  # the same plan as above (its calibration is cached)
    plan = plan_training(spec, tax_income.rows)
    for limit in (tax_income.rows, tax_income.rows - 1):
        chosen = []
        monkeypatch.setattr(runner_mod, "_train_streaming", lambda *a, **k: chosen.append("stream") or refuse())
        monkeypatch.setattr(runner_mod, "_train_in_memory", lambda *a, **k: chosen.append("memory") or refuse())
        with pytest.raises(Exception):
            train(spec, plan, tax_income, tmp_path, limits=ResourceLimits(stream_above_rows=limit))
        assert chosen == (["memory"] if limit == tax_income.rows else ["stream"])


def test_streaming_keeps_one_row_per_unit_when_declared_wrongly(register_table, tax_income):
    import pyarrow as pa

    table = pa.table({"uid": ["a", "a", "a", "b", "c", "c"], "x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
                      "y": [0, 1, 0, 1, 0, 1]})
    ds = register_table("dupes_stream", table, {"uid": {"role": "id"}, "x": {"role": "measure", "bounds": [0, 10]},
                                                "y": {"role": "dimension", "domain": [0, 1]}}, 1)
    spec = parse_spec({"dataset": "dupes_stream", "features": ["x"], "label": "y", "model": "logistic_regression",
                       "epochs": 1, "batch_size": 16, "epsilon": 1.0, "delta": 1e-5, "max_grad_norm": 1.0})
    enc = encoding_for(spec, ds)
    assert ds.ingest_report["rows_per_unit_max"] == 3  # counted at registration, never by a job
    with TrainingStream(ds, enc, STREAMING, ds.path) as stream:
        assert stream.dedup
        rows = sum(b.num_rows for side in (False, True) for b, _, _ in stream.chunks(held_out=side))
    assert rows == 3
    # a registration without the count (before ingest recorded it) keeps the window too
    unproved = dataclasses.replace(ds, ingest_report={k: v for k, v in ds.ingest_report.items()
                                                      if k != "rows_per_unit_max"})
    with TrainingStream(unproved, enc, STREAMING, ds.path) as stream:
        assert stream.dedup
        assert sum(b.num_rows for side in (False, True) for b, _, _ in stream.chunks(held_out=side)) == 3
    tax_enc = encoding_for(parse_spec({**spec.model_dump(), "dataset": "tax_income", "features": ["age"],
                                       "label": "has_default"}), tax_income)
    with TrainingStream(tax_income, tax_enc, STREAMING, tax_income.path) as stream:
        assert not stream.dedup  # ingest counted one row per id


def test_streaming_reads_a_sealed_dataset_and_one_declared_for_spark(tmp_path, train_home, tax_income, monkeypatch):
    import pyarrow.parquet as pq

    from catalog.sealed import SealedError
    from tests.unit.catalog.test_sealed import SUITES, register_sealed

    sealer, ds, _ = register_sealed(tmp_path, SUITES[0])
    spec = parse_spec({"dataset": "d", "features": ["income"], "label": "y", "model": "logistic_regression",
                       "epochs": 1, "batch_size": 16, "epsilon": 1.0, "delta": 1e-5, "max_grad_norm": 1.0})
    plan = plan_training(spec, ds.rows)
    out = train(spec, plan, ds, tmp_path / "sealed", limits=STREAMING, sealer=sealer.for_files(ds.path))
    assert out.card.privacy.steps == plan.steps
    with pytest.raises(Exception) as e:
        train(spec, plan, ds, tmp_path / "no-key", limits=STREAMING)
    assert isinstance(e.value, SealedError) or e.value.details == [{"stage": "read"}]
    # A dataset declared for the Spark engine keeps its registered Parquet copy: a streamed run reads it through
    # Spark (`sandbox.train._spark_data`; the readers are compared in test_spark_stream.py).
    import json

    from catalog._tables import metadata
    from catalog.columns import DatasetSpec
    from catalog.registry import register, spark_installed
    from catalog.store import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    metadata.create_all(engine)
    src = tmp_path / "import" / "tax_spark.parquet"
    src.parent.mkdir(exist_ok=True)
    pq.write_table(pq.read_table(tax_income.path), src)
    if not spark_installed():
        return
    declared = json.loads((train_home / "city" / "tax_income.spec.json").read_text())["columns"]
    spark = register(engine, DatasetSpec.model_validate({"name": "tax_spark", "source": str(src), "engine": "spark",
                                                         "columns": declared, "max_rows_per_unit": 1}),
                     "owner", tmp_path / "data", [src.parent], 1 << 30).dataset
    assert spark.engine == "spark"
    sspec = parse_spec({"dataset": "tax_spark", "features": ["age", "monthly_income"], "label": "has_default",
                        "model": "logistic_regression", "epochs": 1, "batch_size": 1024, "epsilon": 1.0,
                        "delta": 1e-5, "max_grad_norm": 1.0})
    splan = plan_training(sspec, spark.rows)
    used = []
    real = runner_mod._stream_for
    monkeypatch.setattr(runner_mod, "_stream_for", lambda *a: used.append(type(r := real(*a)).__name__) or r)
    one_pass = dataclasses.replace(STREAMING, stream_buffer_rows=1 << 18)  # a Spark job per pass: keep them few
    assert train(sspec, splan, spark, tmp_path / "spark", limits=one_pass).card.privacy.steps == splan.steps
    assert used == ["SparkTrainingStream"]
