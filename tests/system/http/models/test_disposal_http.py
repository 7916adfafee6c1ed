"""An agreement's disposal over HTTP (docs/agreements.md, "Disposal"): revoking it disposes at once — the model
trained under it loses its certificate and scoring it is refused with ``AGREEMENT_INACTIVE`` under any agreement —
and the signed record is shown to the owner and regulators (not the grantee) and verifies with the service's
public key (also as `veilbox agreement disposal` checks it); running the disposal again (the worker's sweep, here
with a clock past the validity window) adds nothing."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from catalog import models
from gateway.services import disposal
from mpc.he import client as he
from policies import _tables as pt
from tests.system.http.models.conftest import FEATURES
from veilbox import bank as bank_sdk
from veilbox.cli import app
from veilbox.cli_disposal import signature_valid
from veilbox.client import ApiError


def _details(entry: dict) -> dict:
    d = entry["details"]
    return d if isinstance(d, dict) else json.loads(d)


@pytest.fixture(scope="module")
def applicants(city_data) -> list[dict]:
    return pq.read_table(city_data.tax_income, columns=FEATURES).slice(0, 2).to_pylist()


def test_revocation_revokes_the_model_and_the_signed_record_verifies(sworld, applicants, columns_keys, make_model):
    p = sworld.parties
    trained = p.agreement("icbc-wuxi")
    m = make_model("job_disposed")
    with p.service.ctx.engine.begin() as conn:  # trained under `trained` (write_model names a stand-in agreement)
        conn.execute(update(models.model_registry).where(models.model_registry.c.id == m.id)
                     .values(agreement_id=trained["id"]))
    assert p.owner.agreement_disposal(trained["id"])["state"] == "none"

    p.owner.revoke_agreement(trained["id"])

    d = p.owner.agreement_disposal(trained["id"])
    steps_run = [name for name, _ in disposal.STEPS]  # jobs, outputs, models (and any step the gateway adds)
    assert steps_run[:3] == ["jobs", "outputs", "models"]
    assert (d["state"], d["case"], d["steps_done"]) == ("complete", "revoked", steps_run)
    steps = {s["step"]: s for s in d["record"]["steps"]}
    assert steps["models"]["revoked"] == [{"model_id": m.id, "certificate_id": m.certificate_id,
                                          "output_digest": m.output_digest}]
    pem = p.owner.audit_public_key()["pem"]
    assert signature_valid(d, pem)
    forged = json.loads(json.dumps(d))
    forged["record"]["steps"][2]["revoked"] = []  # the models step: a revocation hidden
    assert not signature_valid(forged, pem)
    assert p.regulator.agreement_disposal(trained["id"])["signature"] == d["signature"]
    token = p.regulator._http.headers["Authorization"].split()[1]  # the CLI checks the signature itself
    r = CliRunner().invoke(app, ["--url", p.service.url, "--token", token, "agreement", "disposal", trained["id"],
                                 "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["signature_valid"] is True
    with pytest.raises(ApiError) as e:
        p.bank.agreement_disposal(trained["id"])
    assert e.value.code == "NOT_FOUND_OR_FORBIDDEN"

    assert p.bank.model(m.id)["certificate"]["valid"] is False
    x = bank_sdk.encode_applicants(m.card, applicants[:2])
    cts = he.encrypt_columns(columns_keys.context, x)
    cutoff = he.encrypt_cutoffs(columns_keys.context, np.zeros(2))
    with pytest.raises(ApiError) as e:  # under another, active agreement: the certificate itself is revoked
        p.bank.score(m.id, columns_keys.public, cts, "columns", sworld.agreement["id"], cutoff=cutoff)
    assert (e.value.code, e.value.details[0]["reason"]) == ("AGREEMENT_INACTIVE", "model.certificate_revoked")

    ended = p.agreement("icbc-wuxi")  # revoked, its disposal not yet run (a crash right after the revocation)
    m2 = make_model("job_window")
    with p.service.ctx.engine.begin() as conn:
        conn.execute(update(models.model_registry).where(models.model_registry.c.id == m2.id)
                     .values(agreement_id=ended["id"]))
        conn.execute(update(pt.agreements).where(pt.agreements.c.id == ended["id"]).values(state="revoked"))
    with pytest.raises(ApiError) as e:
        p.bank.score(m2.id, columns_keys.public, cts, "columns", sworld.agreement["id"], cutoff=cutoff)
    assert (e.value.code, e.value.details[0]["cause"]) == ("AGREEMENT_INACTIVE", "agreement.revoked")

    entries = p.regulator.audit(limit=1000, action="agreement.dispose")["entries"]
    mine = [_details(e) for e in entries if e["agreement_id"] == trained["id"]]
    assert [x["step"] for x in mine] == [*steps_run, "record"]
    assert mine[-1]["signature"] == d["signature"]

    later = dt.datetime(2030, 1, 2, tzinfo=dt.UTC)  # every agreement of the test past its validity window
    done = disposal.dispose_due(p.service.ctx, now=later)
    assert trained["id"] not in done and sworld.agreement["id"] in done
    assert p.owner.agreement_disposal(trained["id"]) == d  # disposed once
    assert p.owner.agreement_disposal(sworld.agreement["id"])["case"] == "expired"
