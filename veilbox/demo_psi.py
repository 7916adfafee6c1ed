"""`veilbox demo`, the PSI chapter: the bank learns its overlap with the tax registry and verifies one applicant
anonymously (匿踪查询).

The tax bureau grants the bank a second agreement (job kinds psi_size and verify_anonymous, ε 1). The bank holds
its own list of 1,000 applicant ids (here: 600 that happen to be city residents and 400 that are not); it learns
how many the registry knows — a noisy count, ε charged on the ledger — without sending one id in clear, and the
service learns the list's size, never its ids. Then it asks ``income_at_least`` about one applicant without
naming them: the service sees a bucket of at least k subjects, the bank reads only its applicant's verdict.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from veilbox import bank as bank_sdk
from veilbox.client import ApiError

console = Console()

__all__ = ["chapter_psi"]


def chapter_psi(story: Any, data: Any) -> None:
    owner, bank = story.clients["owner"], story.clients["bank"]
    now = dt.datetime.now(dt.UTC)
    doc = {"title": "Applicant overlap and anonymous verification", "grantee": "icbc-wuxi",
           "datasets": ["tax_income"], "columns": {"tax_income": ["monthly_income"]}, "purposes": ["credit_risk"],
           "job_kinds": ["psi_size", "verify_anonymous"], "budget": {"epsilon": 1}, "min_group_units": 20,
           "approval": "auto_within_budget",
           "valid_from": (now - dt.timedelta(days=1)).isoformat(), "valid_until": (now + dt.timedelta(days=365))
           .isoformat(), "quotas": {"verify_per_subject_per_day": 3, "distinct_params_per_subject": 2},
           "exit": {"on_expiry": "seal_outputs"}}
    ag = owner.propose_agreement(doc)
    ag = bank.accept_agreement(ag["id"], document_hash=ag["document_hash"])
    story.state["agreement:psi"] = ag["id"]

    # The bank's own applicant list (its data): 600 city residents, 400 from elsewhere.
    residents = pq.read_table(data.tax_income, columns=["person_id"]).column("person_id").to_pylist()
    applicants = [str(p) for p in residents[:600]] + [f"OUT{i:07d}" for i in range(400)]
    with console.status("PSI: blinding the registry once per dataset version, then the bank's list…"):
        size = bank_sdk.psi_size(bank, ag["id"], "tax_income", applicants, epsilon=0.5)
    t = Table("question", "answer", "what the service saw")
    t.add_row("how many of our 1,000 applicants does the tax registry know?",
              f"{size.size} (± {size.accuracy_95:.0f} at 95%, ε {size.epsilon})",
              "1,000 blinded P-256 points; no id")
    subject = applicants[0]
    with console.status("anonymous check…"):
        ans = bank_sdk.check_anonymous(bank, "income_at_least", ag["id"], subject, {"threshold": 5000},
                                       consent_ref="consent-2026-anon-001")
    t.add_row("applicant #1: monthly income ≥ 5,000? (anonymous)", "yes" if ans.result else "no",
              f"a bucket of {ans.bucket_size} people, the product, the threshold")
    console.print(t)
    claims = bank_sdk.verify_receipt(ans.receipt, bank.audit_public_key()["pem"])
    story.facts.append(f"PSI: the bank learned that about {size.size} of its 1,000 applicants are in the tax "
                       f"registry (true 600; ε {size.epsilon} charged), sending no id in clear")
    story.facts.append(f"anonymous verification (匿踪查询): the service saw a bucket of {ans.bucket_size} subjects, "
                       f"never the applicant; the signed receipt ({claims['kind']}) names no subject")
    try:
        bank_sdk.psi_members(bank, ag["id"], "tax_income", applicants[:10], consent_refs="consent-2026-list")
    except ApiError as e:
        story.facts.append(f"asking which applicants are in the registry is refused without the psi_members "
                           f"grant: {e.code}")
