"""Encryption at rest, end to end on a real gateway, once per suite: a registered dataset, a query, a DP-SGD
training release and the scoring read all work with the master key; a copy of ``VEILBOX_HOME`` taken without the
master key holds no file that opens as Parquet or as a model and none of the raw sample values, PSI setups
included (sealed, `sandbox.psi`) and no custom-code input (staged on a tmpfs, never in the home); destroying the
dataset's data key makes it unreadable (docs/crypto.md "Encryption at rest")."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from safetensors import SafetensorError, safe_open

from catalog import models, registry
from catalog.sealed import SealedError, is_sealed, key_id_of
from gateway.sealing import sealer_of
from gateway.services import jobs as jobflow
from gateway.services.scoring import linear_model
from sandbox.engine import EngineFailure, QueryWorker
from tests.conftest import BOTH_SUITES

FEATURES = ["age", "monthly_income", "social_insurance_months"]
COUNT = "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district"


def _train(parties) -> str:
    ag = parties.agreement()
    job = parties.operator.submit_job(ag["id"], "train", {
        "dataset": "tax_income", "features": FEATURES, "label": "has_default", "model": "logistic_regression",
        "epochs": 1, "batch_size": 512, "epsilon": 1.0, "delta": 1e-6, "max_grad_norm": 1.0})
    done = parties.operator.wait_job(job["id"], timeout=300)
    assert done["state"] == "released", done
    return str(parties.operator.job_result(job["id"])["result"]["model_id"])


def _opens_as_parquet(path: Path) -> bool:
    try:
        pq.ParquetFile(path)
        return True
    except (pa.ArrowException, OSError):
        pass
    try:
        duckdb.execute("SELECT count(*) FROM read_parquet(?)", [str(path)]).fetchall()
        return True
    except duckdb.Error:
        return False


def _opens_as_model(path: Path) -> bool:
    import torch

    try:
        with safe_open(str(path), framework="numpy") as f:
            f.keys()
        return True
    except (SafetensorError, OSError, ValueError):
        pass
    try:
        torch.load(path, weights_only=True)
        return True
    except Exception:
        return False


@BOTH_SUITES
def test_a_stolen_home_without_the_master_key_yields_no_data_and_no_model(parties, city_data, tmp_path,
                                                                           crypto_suite):
    svc = parties.service
    ctx = svc.ctx
    ag = parties.agreement()
    assert parties.operator.query(ag["id"], COUNT, "0.5")["state"] == "released"
    model_id = _train(parties)

    ds = registry.get(ctx.engine, "tax_income")
    assert ds is not None and is_sealed(ds.path)
    m = models.get_model(ctx.engine, model_id)
    assert m is not None
    weights = svc.settings.models_dir / m.weights_path
    assert is_sealed(weights) and is_sealed(weights.parent / "model_card.json")
    assert len(linear_model(ctx, m).weights) == m.card["input_width"]  # the scoring read decrypts in memory
    worker = jobflow.runtime(ctx).engines.worker_for(ds)  # PSI setups: the members set and the anonymous subjects
    ctx.caches.psi_setups.psi(worker, ds, "members")
    ctx.caches.psi_setups.anon(worker, ds, "person_id", 10)
    psi_files = [p for p in (svc.settings.work_dir / "psi").rglob("*") if p.is_file() and p.suffix != ".lock"]
    assert {p.name for p in psi_files} >= {"set.bin", "meta.json", "evaluated.bin", "subjects.json"}
    assert all(is_sealed(p) for p in psi_files)

    stolen = tmp_path / "stolen"
    shutil.copytree(svc.settings.home, stolen)
    files = [p for p in stolen.rglob("*") if p.is_file()]
    assert files
    ids = pq.read_table(city_data.tax_income, columns=["person_id"]).column("person_id").to_pylist()[:200]
    needles = [str(i).encode() for i in ids]
    assert not (stolen / svc.settings.work_dir.relative_to(svc.settings.home) / "code").exists()  # code input: tmpfs
    for p in files:
        assert not _opens_as_parquet(p), p
        assert not _opens_as_model(p), p
        raw = p.read_bytes()
        assert not any(n in raw for n in needles), p

    sealer = sealer_of(ctx)
    sealer.keys.destroy(key_id_of(ds.path))  # crypto-shredding: the record stays, the data is gone
    assert registry.get(ctx.engine, "tax_income") is not None
    with pytest.raises(SealedError):
        sealer.read_file(ds.path)
    with pytest.raises(EngineFailure):
        QueryWorker({"tax_income": ds.path}, threads=1, memory_limit="256MB", timeout_s=60, sealer=sealer).start()
