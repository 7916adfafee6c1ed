"""The engines read a dataset sealed at rest (catalog.sealed) in their own memory only: the query worker (its data
key over its pipe, the plaintext in a memfd of its own), the training reader (the dataset's key only); without the
key, or once it is destroyed, they fail closed."""

from __future__ import annotations

import pytest

from catalog.sealed import SealedError, key_id_of
from sandbox.engine import EngineFailure, QueryWorker
from sandbox.engine.worker import ExecRequest
from tests.unit.catalog.test_sealed import SUITES, register_sealed


@pytest.fixture(params=SUITES)
def sealed_dataset(request, tmp_path):
    return register_sealed(tmp_path, request.param)

def test_query_worker_reads_the_sealed_copy_and_fails_closed_once_its_key_is_destroyed(sealed_dataset) -> None:
    sealer, ds, keys = sealed_dataset
    req = ExecRequest(sql='SELECT count(*), sum(income) FROM "d"', params={}, max_rows=1, ncols=2)
    with QueryWorker({"d": ds.path}, threads=1, memory_limit="256MB", timeout_s=60, sealer=sealer) as w:
        assert w.execute(req) == [[200, sum(float(i % 450) + 0.25 for i in range(200))]]
    with pytest.raises(EngineFailure):  # no key service: the worker does not start
        QueryWorker({"d": ds.path}, threads=1, memory_limit="256MB", timeout_s=60).start()
    keys.destroy(key_id_of(ds.path))
    with pytest.raises(EngineFailure):
        QueryWorker({"d": ds.path}, threads=1, memory_limit="256MB", timeout_s=60, sealer=sealer).start()


def test_training_reader_opens_the_sealed_copy_with_its_key_only(sealed_dataset) -> None:
    from sandbox.train import encoding_for, parse_spec
    from sandbox.train._data import read_splits

    sealer, ds, _ = sealed_dataset
    spec = parse_spec({"dataset": "d", "features": ["income"], "label": "y", "model": "logistic_regression",
                       "epochs": 1, "batch_size": 16, "epsilon": 1.0, "delta": 1e-5, "max_grad_norm": 1.0})
    train, held = read_splits(ds, encoding_for(spec, ds), sealer=sealer.for_files(ds.path))
    assert train.rows + held.rows == 200
    with pytest.raises(SealedError):
        read_splits(ds, encoding_for(spec, ds))
