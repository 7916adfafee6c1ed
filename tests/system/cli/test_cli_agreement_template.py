"""`veilbox agreement template` prints a complete document that `veilbox agreement propose` accepts unchanged, and
that is complete enough to submit for filing (备案); a document without the contractual sections is refused at
submission, naming each missing section."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gateway.services.agreements import set_filing
from policies.agreements.sections import FILING_SECTIONS
from tests.conftest import DATA_OWNER
from veilbox.cli import app
from veilbox.client import ApiError


def test_template_is_proposed_unchanged_and_submitted_for_filing(parties, tmp_path):
    svc = parties.service
    set_filing(svc.ctx.engine, True)
    runner = CliRunner()
    owner_token = parties.owner._http.headers["Authorization"].split()[1]
    printed = runner.invoke(app, ["agreement", "template", "--owner", DATA_OWNER, "--grantee", "risk-lab",
                                  "--dataset", "tax_income", "--columns", "district,monthly_income"])
    assert printed.exit_code == 0, printed.output
    (tmp_path / "agreement.json").write_text(printed.output)
    r = runner.invoke(app, ["--url", svc.url, "--token", owner_token, "agreement", "propose",
                            str(tmp_path / "agreement.json"), "--json"])
    assert r.exit_code == 0, r.output
    ag = json.loads(r.output)
    template = json.loads(printed.output)
    for key in ("document_version", *FILING_SECTIONS):
        assert ag[key] == template[key]
    parties.operator.accept_agreement(ag["id"])
    assert parties.owner.submit_agreement(ag["id"])["state"] == "under_review"

    bare = {k: v for k, v in template.items() if k not in FILING_SECTIONS}
    incomplete = parties.owner.propose_agreement(bare)
    parties.operator.accept_agreement(incomplete["id"])
    with pytest.raises(ApiError) as e:
        parties.owner.submit_agreement(incomplete["id"])
    assert e.value.code == "INVALID_REQUEST"
    assert {(d["reason"], d["at"]) for d in e.value.details} == {("document.incomplete", s) for s in FILING_SECTIONS}
