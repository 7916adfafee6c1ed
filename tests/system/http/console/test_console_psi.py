"""The bank's PSI page over plain HTTP: a psi_size run through the SDK appears with its ε and receipt digest, read
from the bank's own audit entries; no id of the bank's list ever appears in the page; other banks see nothing of
it; other roles get the refusal page."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pyarrow.parquet as pq

from veilbox import bank as bank_sdk


def test_bank_sees_its_psi_release_and_no_id(console: Any, city_data: Any) -> None:
    parties = console.parties
    ag = parties.agreement("icbc-wuxi", job_kinds=["psi_size", "verify_anonymous"], title="Applicant overlap")
    people = sorted(str(r["person_id"]) for r in pq.read_table(city_data.tax_income, columns=["person_id"])
                    .to_pylist())
    ids = people[:30] + [f"APPLICANT-{i:05d}" for i in range(12)]
    out = bank_sdk.psi_size(parties.bank, ag["id"], "tax_income", ids, epsilon="0.75")
    digest = "sha256:" + hashlib.sha256(out.receipt.encode()).hexdigest()

    page = console.web("bank").get("/console/psi")
    assert page.status_code == 200
    html = page.text
    assert '<a href="/console/psi">' in html  # linked from the bank's navigation
    assert f'<article id="psi-{ag["id"]}"' in html and "Applicant overlap" in html
    assert "Remaining for psi_size: ε 4.25, δ 0.000001." in html  # 5 − 0.75, from the ledger
    quotas = html.split('class="psi-quotas"', 1)[1].split("</table>", 1)[0]
    usage = parties.bank.usage(ag["id"])["totals"]
    assert f"<tr><td>calls per day</td><td>10000</td><td>{usage['calls']}</td>" in quotas and usage["calls"] >= 1
    assert "anonymous checks per bucket per day" in quotas
    assert f"veilbox psi size --agreement {ag['id']} --dataset tax_income --ids ids.txt" in html
    history = html.split('id="psi-size-history"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr><td>[^<]*</td><td>" + ag["id"] + r"</td>(.*?)</tr>", history)
    assert len(rows) == 1
    assert "<td>tax_income</td><td>42</td><td>0.75</td>" in rows[0] and digest in rows[0]
    for i in ids:
        assert i not in html
    bad = console.web("bank").get("/console/psi", params={"since": "yesterday"})
    assert bad.status_code == 422 and "since must be a date" in bad.text

    # the noisy size is the bank's: not in the audit entry, read from its own signed receipt (CSRF-protected form)
    web = console.web("bank")
    read = console.post(web, "/console/psi/receipt", "/console/psi", {"receipt": out.receipt})
    assert read.status_code == 200 and 'id="receipt-read"' in read.text
    assert f'id="receipt-size">{out.size}<' in read.text and f'id="receipt-epsilon">{out.epsilon}<' in read.text
    assert digest in read.text
    payload = out.receipt.split(".")[1]
    forged = out.receipt.replace(payload, payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB"))
    bad_sig = console.post(web, "/console/psi/receipt", "/console/psi", {"receipt": forged})
    assert bad_sig.status_code == 422 and "not a receipt signed by this service" in bad_sig.text
    assert web.post("/console/psi/receipt", data={"receipt": out.receipt}).status_code == 403  # no CSRF token

    other = console.sign_in(console.url, parties.service.admin.create_principal("abc-suzhou", "bank")["token"])
    console.sessions.append(other)
    theirs = other.get("/console/psi")
    assert theirs.status_code == 200 and 'id="no-psi-agreements"' in theirs.text
    assert ag["id"] not in theirs.text and digest not in theirs.text
    stolen = console.post(other, "/console/psi/receipt", "/console/psi", {"receipt": out.receipt})
    assert stolen.status_code == 403 and "not issued under an agreement you hold" in stolen.text
    assert 'id="receipt-size"' not in stolen.text

    # the owner sees on its dataset page that this version's psi_size setup exists; others do not see it
    owner_page = console.web("owner").get("/console/datasets/tax_income").text
    assert 'id="psi-setups">psi_size: computed; psi_members: not computed yet' in owner_page
    assert 'id="psi-setups"' not in console.web("bank").get("/console/datasets/tax_income").text

    refused = console.web("operator").get("/console/psi")
    assert refused.status_code == 403 and "This page is for bank principals" in refused.text
    assert digest not in refused.text


def test_membership_and_anonymous_checks_show_counts_and_digests_never_a_subject(console: Any, city_data: Any
                                                                                  ) -> None:
    parties = console.parties
    parties.service.ctx.settings.anon_min_bucket = 64  # small buckets keep the anonymous check fast
    parties.owner.define_verification({"name": "income_at_least", "dataset": "tax_income",
                                       "subject_column": "person_id", "predicate": "monthly_income >= :threshold",
                                       "params": {"threshold": "number"}})
    ag = parties.agreement("icbc-wuxi", job_kinds=["psi_members", "verify_anonymous"])
    people = sorted(str(r["person_id"]) for r in pq.read_table(city_data.tax_income, columns=["person_id"])
                    .to_pylist())
    asked = [*people[100:110], "APPLICANT-77"]
    found = bank_sdk.psi_members(parties.bank, ag["id"], "tax_income", asked, consent_refs="consent-batch-9")
    assert sorted(found) == people[100:110]
    subject = people[200]
    ans = bank_sdk.check_anonymous(parties.bank, "income_at_least", ag["id"], subject, {"threshold": 5000},
                                   consent_ref="consent-anon-3")
    anon_digest = "sha256:" + hashlib.sha256(ans.receipt.encode()).hexdigest()

    html = console.web("bank").get("/console/psi").text
    assert "Remaining for psi_size" not in html  # no ε is spent by these kinds
    assert f"veilbox verify check-anonymous income_at_least --agreement {ag['id']} --subject SUBJECT" in html
    assert "--param threshold=VALUE" in html
    members = html.split('id="psi-members-history"', 1)[1].split("</table>", 1)[0]
    assert f"<td>{ag['id']}</td><td>tax_income</td><td>11</td>" in members
    anon = html.split('id="anon-history"', 1)[1].split("</table>", 1)[0]
    assert re.search(rf"<td>{ag['id']}</td><td>income_at_least</td><td>{ans.bucket_size}</td><td><code>"
                     rf"{anon_digest}</code>", anon)
    for i in [*asked, subject]:
        assert i not in html
    read = console.post(console.web("bank"), "/console/psi/receipt", "/console/psi", {"receipt": ans.receipt})
    assert read.status_code == 200 and f'id="receipt-bucket_size">{ans.bucket_size}<' in read.text
    assert subject not in read.text
