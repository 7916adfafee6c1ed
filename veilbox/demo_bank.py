"""`veilbox demo`, the bank chapter: verification (核验) and encrypted credit scoring.

The tax bureau defines three verification products over ``tax_income``. The bank, under its agreement
(``agreement:bank``: job kinds verify + score), asks yes/no questions about applicants who consented, in
clear and under BFV encryption (the service never sees the bank's thresholds), tries to binary-search one
person's income and is stopped by the distinct-parameter cap, then scores a batch of its own applicants with
the operator's DP credit model (``model_id``) under CKKS: it gets one decision per applicant against its own
encrypted cut-off (the features, the cut-off and the masked score stay encrypted under the bank's key, and the
weights never leave the service), and its request for the logits themselves is refused (its agreement grants
decisions only).
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from veilbox import bank as bank_sdk
from veilbox.client import ApiError

console = Console()

__all__ = ["APPLICANTS", "PRODUCTS", "chapter_bank"]

PRODUCTS: list[dict[str, Any]] = [
    {"name": "income_at_least", "dataset": "tax_income", "subject_column": "person_id",
     "predicate": "monthly_income >= :threshold", "params": {"threshold": "integer"},
     "description": "Is the person's registered monthly income at least the threshold?"},
    {"name": "declared_income_matches", "dataset": "tax_income", "subject_column": "person_id",
     "predicate": "abs(monthly_income - :declared) <= :tolerance * monthly_income",
     "params": {"declared": "number", "tolerance": "number"},
     "description": "Is the income the applicant declared within the tolerance of the registered one?"},
    {"name": "insured_months_at_least", "dataset": "tax_income", "subject_column": "person_id",
     "predicate": "social_insurance_months >= :months", "params": {"months": "integer"},
     "description": "Has the person paid social insurance for at least this many months?"},
]

#: The bank's own applicants (its data, not the city's): what it knows and encrypts for scoring.
APPLICANTS: list[dict[str, Any]] = [
    {"name": "Chen", "age": 29, "industry": "it", "district": "Binhu", "monthly_income": 18_500,
     "social_insurance_months": 70},
    {"name": "Li", "age": 45, "industry": "construction", "district": "Jiangyin", "monthly_income": 6_200,
     "social_insurance_months": 220},
    {"name": "Wang", "age": 23, "industry": "hospitality", "district": "Liangxi", "monthly_income": 3_900,
     "social_insurance_months": 8},
    {"name": "Zhao", "age": 52, "industry": "finance", "district": "Xinwu", "monthly_income": 41_000,
     "social_insurance_months": 300},
    {"name": "Sun", "age": 36, "industry": "retail", "district": "Yixing", "monthly_income": 7_800,
     "social_insurance_months": 120},
]

CONSENT = "consent/icbc-wuxi/2026/{i:04d}"


def _define_products(story: Any) -> None:
    owner = story.clients["owner"]
    existing = {p["name"] for p in owner.verifications()}
    for spec in PRODUCTS:
        if spec["name"] not in existing:
            owner.define_verification(spec)
    try:
        owner.define_verification({"name": "peek", "dataset": "tax_income", "subject_column": "person_id",
                                   "predicate": "id_number = :n OR monthly_income > (SELECT AVG(monthly_income) "
                                                "FROM tax_income)", "params": {"n": "string"}})
    except ApiError as e:
        rules = sorted({d["rule"] for d in e.details})
        story.facts.append(f"a predicate reading a never_output column through a subquery was refused at "
                           f"definition: {e.code} ({', '.join(rules)})")
    story.facts.append(f"the tax bureau offers {len(PRODUCTS)} verification products (核验); their predicates "
                       "were vetted like SQL")


def _plain_checks(story: Any, agreement: str) -> None:
    bank = story.clients["bank"]
    questions: list[tuple[str, str, dict[str, Any]]] = [
        ("P0000001", "income_at_least", {"threshold": 8000}),
        ("P0000002", "income_at_least", {"threshold": 8000}),
        ("P0000003", "insured_months_at_least", {"months": 24}),
        ("P0000004", "declared_income_matches", {"declared": 9000, "tolerance": 0.1}),
        ("P9999999", "income_at_least", {"threshold": 8000}),
    ]
    t = Table("subject", "question", "answer", "receipt", title="what the bank learned (plain checks)")
    for i, (subject, product, params) in enumerate(questions):
        r = bank.check(product, agreement, subject, params, consent_ref=CONSENT.format(i=i))
        shown = ", ".join(f"{k}={v}" for k, v in params.items())
        t.add_row(subject, f"{product}({shown})", "yes" if r["result"] else "no", r["receipt"][:24] + "…")
    console.print(t)
    key = bank.audit_public_key()["pem"]
    claims = bank_sdk.verify_receipt(r["receipt"], key)
    story.facts.append(f"the bank asked {len(questions)} yes/no questions and got only bits and signed receipts "
                       f"(receipt verified offline; it names {claims['subject_hash'][:11]}…, never the id); the "
                       "unknown subject P9999999 answered a plain 'no'")


def _encrypted_checks(story: Any, agreement: str) -> None:
    bank = story.clients["bank"]
    subjects = ["P0000005", "P0000006", "P0000007", "P0000008", "P9999998"]
    thresholds = [5000, 10000, 15000, 3000, 1000]  # the bank's private lending thresholds
    answers, _receipt = bank_sdk.check_thresholds(bank, "income_at_least", agreement, subjects, thresholds,
                                                  consent_ref="consent/icbc-wuxi/2026/batch-7")
    t = Table("subject", "threshold (bank only)", "income ≥ threshold", title="encrypted threshold checks (BFV)")
    for s, th, a in zip(subjects, thresholds, answers, strict=True):
        t.add_row(s, f"{th:,}", "yes" if a else "no")
    console.print(t)
    story.facts.append(f"{len(subjects)} income checks ran under the bank's BFV key: the service evaluated "
                       "Enc(r·(x − t) + r′) without seeing any threshold; the bank read signs only "
                       f"({sum(answers)} yes)")


def _binary_search(story: Any, agreement: str) -> None:
    bank = story.clients["bank"]
    lo, hi, answers = 0, 200_000, 0
    try:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            r = bank.check("income_at_least", agreement, "P0000010", {"threshold": mid}, consent_ref="consent/x")
            lo, hi = (mid, hi) if r["result"] else (lo, mid)
            answers += 1
    except ApiError as e:
        story.facts.append(f"binary-searching one person's income stopped after {answers} answers with {e.code}: "
                           f"the bank only knows it lies in [{lo:,}, {hi:,})")
        return
    story.facts.append(f"binary search was not stopped ({answers} answers): check the agreement's quotas")


#: The bank's own lending rule: decline when P(default) ≥ 20 %, i.e. when the logit is at least log(0.2/0.8).
DECLINE_AT = 0.20


def _scoring(story: Any, agreement: str) -> None:
    bank = story.clients["bank"]
    model_id = story.state.get("model_id")
    if not model_id:
        story.facts.append("no released model to score with (the training chapter did not release one)")
        return
    card = bank.model(model_id)
    cutoff = math.log(DECLINE_AT / (1 - DECLINE_AT))
    with console.status("deciding applicants under CKKS encryption…"):
        out = bank_sdk.decide_applicants(bank, model_id, APPLICANTS, cutoff, layout="columns",
                                         agreement_id=agreement, card=card["card"])
    t = Table("applicant", "age", "industry", "income", f"P(default) ≥ {DECLINE_AT:.0%}?",
              title=f"encrypted decisions with {model_id} (certificate {card['certificate']['id']})")
    for a, declined in zip(APPLICANTS, out.decisions, strict=True):
        t.add_row(a["name"], str(a["age"]), a["industry"], f"{a['monthly_income']:,}",
                  "yes: decline" if declined else "no: approve")
    console.print(t)
    terms = card["scoring"]
    story.facts.append(f"the bank decided {len(APPLICANTS)} applicants with the DP model under CKKS (column layout) "
                       f"against its own encrypted cut-off (P(default) ≥ {DECLINE_AT:.0%}, never sent in clear): "
                       "features, cut-off and the masked r·(score − cut-off) stay under its key, it reads one bit "
                       f"per applicant, the weights never leave; {out.decisions_used:,} of "
                       f"{terms['max_decisions_per_agreement']:,} decisions of the card's quota used")
    try:
        bank_sdk.score_applicants(bank, model_id, APPLICANTS[:1], layout="columns", agreement_id=agreement,
                                  card=card["card"])
        story.facts.append("the logits themselves were returned: check the agreement's score_logits grant")
    except ApiError as e:
        reasons = ", ".join(sorted({str(d.get("reason")) for d in e.details}))
        story.facts.append(f"asking for the logits themselves was refused with {e.code} ({reasons}): the agreement "
                           f"grants decisions only, and a linear model falls to {terms['extraction_query_bound']} "
                           f"chosen logits (the card allows at most {terms['max_logits_per_agreement']} even where "
                           "logits are granted)")


def chapter_bank(story: Any) -> None:
    """The owner defines products; the bank verifies (plain, encrypted), is stopped searching, and scores."""
    agreement = story.state["agreement:bank"]
    _define_products(story)
    _plain_checks(story, agreement)
    _encrypted_checks(story, agreement)
    _binary_search(story, agreement)
    _scoring(story, agreement)
    console.print(Panel(
        "learned: one yes/no per question (plus, for encrypted checks, a rough magnitude of income − threshold "
        "hidden in the masked value), a signed receipt per answer, one decision per applicant (plus a rough "
        "magnitude of score − cut-off)\n"
        "did not learn: any exact income or insurance record, the row count, whether an unknown subject exists, "
        "its applicants' scores, the model's weights (a linear model is re-derivable from d+1 chosen logits, "
        "which the agreement does not grant, or from many chosen decisions: the card's quotas meter both)",
        title="the bank, after this chapter", title_align="left"))
