"""The encoding comes from the declaration only: declared bounds and domains, never data statistics."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from catalog.errors import INVALID_REQUEST, DomainError
from sandbox.train import FeatureEncoding, encode_features, encoding_for, parse_spec
from sandbox.train._data import read_splits

COLUMNS = {
    "uid": {"role": "id"},
    "region": {"role": "dimension", "domain": ["north", "south", "east", "atlantis"]},
    "flag": {"role": "dimension", "domain": [False, True]},
    "level": {"role": "dimension", "bounds": [0, 10]},
    "amount": {"role": "measure", "bounds": [-100, 300]},
    "y": {"role": "dimension", "domain": ["good", "bad"]},
}


@pytest.fixture(scope="module")
def regions(register_table):
    n = 400
    idx = np.arange(n)
    table = pa.table({
        "uid": [f"U{i:05d}" for i in idx],
        "region": pa.array([["north", "south", "east", "mars", None][i % 5] for i in idx]),
        "flag": pa.array([bool(i % 2) for i in idx]),
        "level": pa.array([int(i % 11) for i in idx], pa.int64()),
        "amount": pa.array([float(i % 401) - 100.0 if i % 7 else None for i in idx]),
        "y": pa.array([["good", "bad", "ugly"][i % 3] for i in idx]),
    })
    return register_table("regions", table, COLUMNS, 1)


@pytest.fixture
def encoding(regions) -> FeatureEncoding:
    spec = parse_spec({"dataset": "regions", "features": ["region", "flag", "level", "amount"], "label": "y",
                       "model": "logistic_regression", "epochs": 1, "batch_size": 16, "epsilon": 1.0,
                       "delta": 1e-5, "max_grad_norm": 1.0})
    return encoding_for(spec, regions)


def test_layout_follows_the_declaration(encoding):
    assert encoding.feature_names == ["region=north", "region=south", "region=east", "region=atlantis",
                                      "flag=false", "flag=true", "level", "amount"]
    assert encoding.width == 8
    assert encoding.label_domain == ("good", "bad") and encoding.positive_class == "bad"


def test_absent_domain_value_keeps_its_slot(regions, encoding):
    train, held = read_splits(regions, encoding)
    x = np.concatenate([train.x, held.x])
    assert x.shape[1] == 8
    assert not x[:, 3].any()  # "atlantis" never occurs, its slot is there and empty
    assert x[:, :3].sum() > 0
    # "mars" (outside the domain) and null regions encode as all zeros.
    assert (x[:, :4].sum(axis=1) == 0).sum() > 0
    # Labels outside the domain ("ugly") are dropped; the rest map bad → 1, good → 0.
    assert train.rows + held.rows == sum(1 for i in range(400) if i % 3 != 2)
    assert set(np.unique(np.concatenate([train.y, held.y]))) == {0.0, 1.0}


def test_scaling_uses_declared_bounds_not_data_range(encoding):
    batch = pa.table({"region": ["north"], "flag": [True], "level": pa.array([5], pa.int64()),
                      "amount": [100.0]})
    row = encoding.encode_batch(batch)[0]
    assert row.tolist() == [1, 0, 0, 0, 0, 1, 0.0, 0.0]  # 5 in [0,10] and 100 in [-100,300] are midpoints
    extremes = pa.table({"region": ["x", None], "flag": [None, False], "level": pa.array([99, None], pa.int64()),
                         "amount": [-1e9, None]})
    x = encoding.encode_batch(extremes)
    assert x[0].tolist() == [0, 0, 0, 0, 0, 0, 1.0, -1.0]  # clipped to the declared range
    assert x[1].tolist() == [0, 0, 0, 0, 1, 0, 0.0, 0.0]  # nulls: all-zero one-hot, midpoint scale


def test_encoding_is_per_row(encoding):
    """No statistic of the batch enters: encoding a batch equals encoding each of its rows on its own."""
    batch = pa.table({"region": ["south", "east", None, "mars"], "flag": [True, False, True, None],
                      "level": pa.array([0, 10, 3, None], pa.int64()), "amount": [-100.0, 300.0, 17.5, 0.0]})
    whole = encoding.encode_batch(batch)
    for i in range(batch.num_rows):
        np.testing.assert_array_equal(whole[i], encoding.encode_batch(batch.slice(i, 1))[0])
        np.testing.assert_array_equal(whole[i], encode_features(encoding, batch.slice(i, 1).to_pylist()[0]))


def test_plaintext_feature_dict(encoding):
    card_encoding = FeatureEncoding.model_validate(encoding.model_dump(mode="json"))
    assert card_encoding == encoding
    v = encode_features(card_encoding, {"region": "atlantis", "flag": 1, "level": 2.5, "amount": 300,
                                        "extra": "ignored"})
    assert v.dtype == np.float32
    # An integer 1 is not the boolean True: the flag slots stay empty.
    assert v.tolist() == [0, 0, 0, 1, 0, 0, -0.5, 1.0]
    with pytest.raises(DomainError) as e:
        encode_features(encoding, {"region": "north"})
    assert e.value.code == INVALID_REQUEST
    with pytest.raises(DomainError):
        encode_features(encoding, {"region": "north", "flag": True, "level": "high", "amount": 1})
