"""An owner withdraws a dataset (docs/agreements.md, "Exit and withdrawal"), on SQLite and PostgreSQL: its active
agreement is suspended, its approved job cancelled and its charge refunded, a query on it refused
(``dataset.withdrawn``); after the grace period the disposal duty destroys its data key and deletes its sealed copy,
the record stays (``state: withdrawn``), a signed ``dataset.dispose`` entry is in the log and the chain verifies.
Someone else than the owner (or an admin) is refused without learning whether the dataset exists."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from catalog import registry
from catalog.keyring import data_keys
from catalog.sealed import key_id_of
from gateway.services import datasets as dataset_service
from gateway.settings import Settings
from tests.conftest import STORES
from veilbox.client import ApiError

TRAIN = {"dataset": "tax_income", "features": ["age", "monthly_income"], "label": "has_default",
         "model": "logistic_regression", "epochs": 1, "batch_size": 512, "epsilon": 1.0, "delta": 1e-6,
         "max_grad_norm": 1.0}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """No embedded job worker: an approved job stays approved until the withdrawal cancels it."""
    return settings.model_copy(update={"worker": False})


@pytest.mark.parametrize("store", STORES)
def test_withdraw_suspends_refunds_refuses_then_disposal_shreds_the_copy(parties, store):
    svc, ctx = parties.service, parties.service.ctx
    ag = parties.agreement(approval="auto_within_budget")
    job = parties.operator.submit_job(ag["id"], "train", TRAIN)
    assert parties.operator.job(job["id"])["state"] == "approved"
    before = parties.owner.budget(ag["id"])
    ds = registry.get(ctx.engine, "tax_income")
    assert ds is not None and Path(ds.path).exists()
    key = key_id_of(Path(ds.path))

    with pytest.raises(ApiError) as e:  # not the owner: one answer, exists or not
        parties.operator._json("POST", "/v1/datasets/tax_income/withdraw", json={"reason": "mine now"})
    assert e.value.code == "NOT_FOUND_OR_FORBIDDEN"

    w = parties.owner.withdraw_dataset("tax_income", "the source system is decommissioned")
    assert w["state"] == "withdrawn" and w["agreements_suspended"] == [ag["id"]]
    assert w["jobs_cancelled"] == [job["id"]] and w["jobs_refunded"] == [job["id"]]
    assert parties.owner.agreement(ag["id"])["state"] == "suspended"
    assert parties.operator.job(job["id"])["state"] == "cancelled"
    assert parties.owner.budget(ag["id"]) != before  # the charge came back
    with pytest.raises(ApiError) as e:  # nothing new runs on it
        parties.operator.query(ag["id"], "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district", 0.5)
    assert any(d.get("reason") == "dataset.withdrawn" for d in e.value.details), e.value.details
    with pytest.raises(ApiError) as e:  # nor does its agreement come back
        parties.owner.resume_agreement(ag["id"])
    assert any(d.get("reason") == "dataset.withdrawn" for d in e.value.details), e.value.details
    with pytest.raises(ApiError) as e:
        parties.owner.withdraw_dataset("tax_income", "again")
    assert e.value.code == "INVALID_REQUEST"

    now = dt.datetime.now(dt.UTC)
    assert dataset_service.dispose_due(ctx, now=now) == []  # within the grace period: kept
    assert dataset_service.dispose_due(ctx, now=now + dt.timedelta(seconds=svc.settings.withdraw_grace_s + 1)) \
        == ["tax_income"]
    assert not Path(ds.path).exists()
    with ctx.engine.connect() as conn:
        assert conn.execute(select(data_keys.c.object_id).where(data_keys.c.object_id == key)).first() is None
    shown = parties.owner.dataset("tax_income")
    assert shown["state"] == "withdrawn" and shown["fingerprint"] == ds.fingerprint  # the record is kept
    entries = [e for e in parties.owner.audit(limit=500)["entries"] if e["action"] == "dataset.dispose"]
    assert len(entries) == 1
    details = entries[0]["details"]
    details = json.loads(details) if isinstance(details, str) else details
    assert details["record"]["fingerprint"] == ds.fingerprint and key in details["record"]["keys"]
    assert details["signature"]
    withdraw_entries = [e for e in parties.owner.audit(limit=500)["entries"] if e["action"] == "dataset.withdraw"]
    assert [e["decision"] for e in withdraw_entries].count("allow") == 1
    assert ctx.audit.verify().ok
