"""The model registry: certificates are unique and dated; the public view never names the weights."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from catalog import models
from catalog.errors import DomainError
from catalog.store import make_engine
from gateway import schema


@pytest.fixture
def engine(tmp_path):
    e = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    schema.upgrade(e)
    yield e
    e.dispose()


def _register(engine, job_id="job_1", **kw):
    args = {"agreement_id": "agr_1", "owner": "risk-lab", "algorithm": "logistic_regression",
            "purpose": "credit_risk", "features": ["age", "district"], "card": {"privacy": {"epsilon": 1.0}},
            "weights_path": f"{job_id}/model.safetensors", "output_digest": "sha256:" + "a" * 64,
            "source_datasets": {"tax_income": "sha256:" + "b" * 64}, "valid_days": 30,
            "now": dt.datetime(2026, 11, 1, tzinfo=dt.UTC)}
    args.update(kw)
    return models.register_model(engine, job_id=job_id, **args)


def test_register_issue_certificate_and_read_back(engine):
    a, b = _register(engine, "job_1"), _register(engine, "job_2")
    assert a.certificate_id != b.certificate_id and a.certificate_id.startswith("VBX-MC-2026-")
    assert a.valid_until - a.valid_from == dt.timedelta(days=30)
    assert models.get_model(engine, a.id) == a
    assert {m.id for m in models.list_models(engine)} == {a.id, b.id}
    pub = a.public(now=dt.datetime(2026, 11, 15, tzinfo=dt.UTC))
    assert pub["certificate"]["valid"] is True and pub["certificate"]["id"] == a.certificate_id
    assert "safetensors" not in json.dumps(pub)
    assert a.public(now=dt.datetime(2027, 1, 1, tzinfo=dt.UTC))["certificate"]["valid"] is False
    assert models.get_model(engine, "mdl_missing") is None


@pytest.mark.parametrize("bad", [{"valid_days": 0}, {"weights_path": "/etc/passwd"},
                                 {"weights_path": "../x.safetensors"}, {"features": []}, {"source_datasets": {}}])
def test_malformed_registrations_are_refused(engine, bad):
    with pytest.raises(DomainError) as e:
        _register(engine, **bad)
    assert e.value.code == "INVALID_REQUEST"
    assert models.list_models(engine) == []


def test_one_model_per_job(engine):
    _register(engine, "job_1")
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):  # the store's unique constraint
        _register(engine, "job_1")
    assert len(models.list_models(engine)) == 1
