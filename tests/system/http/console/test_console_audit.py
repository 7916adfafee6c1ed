"""The regulator's audit browser over HTTP: newest first with the count of every match, date pickers, agreement
titles beside ids, and the filtered view exported as CSV and as Parquet (an owner's export keeps to its scope)."""

import csv
import datetime as dt
import io
import json

import pyarrow.parquet as pq

from .conftest import sign_in, token_of


def test_regulator_filters_by_date_and_exports_the_filtered_view(parties):
    ag = parties.agreement(title="District statistics 2026")
    reg = sign_in(parties.service.url, token_of(parties.regulator))
    owner = sign_in(parties.service.url, token_of(parties.owner))
    try:
        today = dt.datetime.now(dt.UTC).date().isoformat()
        page = reg.get("/console/audit", params={"agreement_id": ag["id"], "date_from": today, "date_to": today})
        assert page.status_code == 200 and 'type="date"' in page.text
        assert "District statistics 2026" in page.text and 'id="audit-totals"' in page.text
        seqs = [int(s) for s in __import__("re").findall(r'<tr class="decision-\w+"><td>(\d+)</td>', page.text)]
        assert seqs and seqs == sorted(seqs, reverse=True)
        assert "No entries match" in reg.get("/console/audit", params={"date_to": "2001-01-01"}).text
        assert reg.get("/console/audit", params={"date_from": "yesterday"}).status_code == 422

        rows = list(csv.DictReader(io.StringIO(reg.get("/console/audit/export.csv", params={
            "agreement_id": ag["id"], "date_from": today}).text)))
        assert rows and {r["agreement_id"] for r in rows} == {ag["id"]}
        assert {r["agreement_title"] for r in rows} == {"District statistics 2026"}
        assert len(rows) == len(seqs)
        table = pq.read_table(io.BytesIO(reg.get("/console/audit/export.parquet",
                                                 params={"agreement_id": ag["id"]}).content))
        assert table.num_rows == len(rows) and set(table.column("agreement_id").to_pylist()) == {ag["id"]}

        mine = list(csv.DictReader(io.StringIO(owner.get("/console/audit/export.csv").text)))
        assert mine and all(r["actor"] == "city-tax-bureau" or r["dataset"] == "tax_income" or r["agreement_id"]
                            for r in mine)
        assert not any(r["actor"] == "regulator" and not r["agreement_id"] and not r["dataset"] for r in mine)
        exports = [e for e in parties.regulator.audit(limit=1000, action="console.audit.export")["entries"]]
        assert {json.loads(e["details"])["format"] for e in exports} == {"csv", "parquet"}
    finally:
        reg.close()
        owner.close()
