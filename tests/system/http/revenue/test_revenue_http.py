"""Multi-owner agreement and its revenue statement over real HTTP (docs/revenue.md): the grantee cannot accept
before the co-owner signs its part, a non-owner cannot sign, and the month's statement — JSON, CSV, PDF — matches
the meters and splits the charges by the agreement's shares to the cent; the same through the CLI (in process)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.conftest import Parties
from veilbox.cli import app
from veilbox.client import ApiError, Client


def test_multi_owner_agreement_and_its_statement(parties: Parties, tmp_path: Path) -> None:
    svc = parties.service
    hr = svc.principal("hr-bureau", "owner")
    directory = svc.settings.import_roots[-1] / "hr-bureau"
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"pid": [f"P{i}" for i in range(200)], "months": [i % 120 for i in range(200)]}),
                   directory / "social_months.parquet")
    hr.register_dataset({"name": "social_months", "source": str(directory / "social_months.parquet"),
                         "grade": "general", "columns": {"pid": {"role": "id"},
                                                         "months": {"role": "measure", "bounds": [0, 480]}}})
    ag = parties.agreement(
        accept=False, co_owners=["hr-bureau"], datasets=["tax_income", "social_months"],
        columns={"tax_income": ["district", "monthly_income"], "social_months": ["months"]}, job_kinds=["query"],
        price={"per_call": "0.10", "per_job": 3, "per_epsilon": 2, "currency": "CNY"},
        revenue={"split": "shares", "shares": {"city-tax-bureau": "3/4", "hr-bureau": "1/4"}})
    assert ag["co_owners"] == ["hr-bureau"]
    with pytest.raises(ApiError) as e:
        parties.operator.accept_agreement(ag["id"])
    assert e.value.code == "POLICY_DENIED" and e.value.details[0]["reason"] == "agreement.unsigned"
    with pytest.raises(ApiError):
        parties.bank.sign_agreement(ag["id"], ag["document_hash"])
    with pytest.raises(ApiError) as e:
        parties.owner.sign_agreement(ag["id"], ag["document_hash"])  # the proposer has no part to sign
    assert e.value.code == "POLICY_DENIED"
    sig = hr.sign_agreement(ag["id"], ag["document_hash"])
    assert sig["datasets"] == ["social_months"] and sig["current"]
    assert [s["owner"] for s in parties.regulator.agreement_signatures(ag["id"])] == ["hr-bureau"]
    assert parties.operator.accept_agreement(ag["id"], ag["document_hash"])["state"] == "active"

    parties.operator.query(ag["id"], "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district", "0.5")
    month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    s = hr.statement(ag["id"], month)
    usage = parties.owner.usage(ag["id"])["totals"]
    assert (s["usage"]["calls"], s["usage"]["jobs"], s["usage"]["epsilon"]) == (
        usage["calls"], usage["jobs"], usage["epsilon"])
    expected = 10 * usage["calls"] + 300 * usage["jobs"] + 100  # cents: ε 0.5 at 2 CNY
    assert s["total"]["amount"] == f"{expected // 100}.{expected % 100:02d}"
    parts = {o["owner"]: round(float(o["amount"]) * 100) for o in s["owners"]}
    assert sum(parts.values()) == expected and abs(parts["hr-bureau"] - expected / 4) <= 0.5
    assert parties.regulator.statement(ag["id"], month) == s
    csv_text = parties.owner.statement(ag["id"], month, "csv").decode()
    assert csv_text.splitlines()[0].startswith("agreement,month,currency") and "hr-bureau" in csv_text
    assert parties.operator.statement(ag["id"], month, "pdf").startswith(b"%PDF")
    with pytest.raises(ApiError) as e:
        parties.bank.statement(ag["id"], month)  # no party: one answer, exists or not
    assert e.value.code == "NOT_FOUND_OR_FORBIDDEN"
    own = hr.owner_statement(month)
    assert own["totals"] == [{"currency": "CNY", "amount": next(o["amount"] for o in s["owners"]
                                                                if o["owner"] == "hr-bureau")}]
    with pytest.raises(ApiError) as e:
        hr.owner_statement(month, owner="city-tax-bureau")
    assert e.value.code == "NOT_FOUND_OR_FORBIDDEN"

    # the CLI: veilbox statement agreement|owner, veilbox agreement signatures
    runner = CliRunner()

    def cli(client: Client, *args: str, code: int = 0) -> Any:
        token = client._http.headers["Authorization"].split()[1]
        r = runner.invoke(app, ["--url", svc.url, "--token", token, *args, "--json"])
        assert r.exit_code == code, r.output
        return json.loads(r.output) if code == 0 else None

    assert cli(hr, "statement", "agreement", ag["id"], "--month", month) == s
    assert cli(hr, "statement", "owner", "--month", month) == own
    pdf = tmp_path / "s.pdf"
    assert cli(parties.owner, "statement", "agreement", ag["id"], "--month", month, "--format", "pdf",
               "--out", str(pdf)) == {"wrote": str(pdf)}
    assert pdf.read_bytes().startswith(b"%PDF")
    assert cli(parties.regulator, "agreement", "signatures", ag["id"])[0]["owner"] == "hr-bureau"
    cli(parties.bank, "statement", "agreement", ag["id"], "--month", month, code=1)
