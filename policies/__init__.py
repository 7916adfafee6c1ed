"""Policies: agreements, decisions, privacy budgets, jobs and quotas. Never touches raw data.

Module map (the gateway imports only the names re-exported here):

- `actor`: `Actor(name, role)` — the authenticated principal, as plain values; `Role`.
- `agreements`: `agreements.document` — the agreement document (`AgreementDocument`, pydantic, versioned by
  canonical hash); `agreements.record` — the stored `Agreement`, `effective_state` (``expired`` is derived) and
  `outputs_sealed` (exit clause); `agreements.lifecycle` — `create_agreement`, `accept`, `suspend`, `resume`,
  `revoke`, `amend_agreement` and `record_expiry` (once); `agreements.filing` — filing (备案): `submit_for_filing`,
  `file_agreement`, `refuse`, `activate`, the data authority's `authority_suspend`/`authority_resume`, sign-offs
  (`reviews`) and rectification orders (`issue_order`, `close_order`, `list_orders`).
- `negative_list`: admin-managed entries (dataset, ``dataset.column``, purpose) no agreement can override.
- `decision`: `decide(ctx) -> Decision(allow, reasons)`, pure, reporting every reason; `Decision.error()` maps
  a denial to one `DomainError` (not-found-or-forbidden > inactive > budget > quota > policy).
- `access`: `authorize` — load, decide, meter or raise — for agreement-scoped requests (`permit`: decide now,
  meter later with the caller's journal); budget/usage reads.
- `budget`: exact (ε, δ) `Budget` (basic composition) over `fractions.Fraction`.
- `ledger`: per-(agreement, dataset) accounts; `charge` (check-then-debit, one transaction), idempotent
  `refund`, `remaining`, `status`.
- `jobs`: job records and their state machine; approval bound to spec hash and dataset fingerprints; the
  durable queue (`claim_next`) and worker leases (`renew_lease`, `sweep_expired`);
  released results; outputs awaiting the owner's release
  and owner-only failure detail (`job_output`, ``job_outputs``), written with the state change.
- `quotas`: metering with atomic increments, quota checks, `usage` and billing.
- `agreements.signing`: multi-owner agreements — each co-owner signs its part (`sign_agreement`, bound to the
  document hash), read with `agreement_signatures`; acceptance waits for every signature.
- `revenue`: monthly statements (收益分成) — usage from the meters, charges by the price schedule, the split among
  the data-source owners exact to the cent (`revenue.agreement_statement`, `revenue.owner_statement`).
- `complaints`: complaints and objections (投诉与异议): filing, routing, who reads and moves them, and the
  subjects an owner's open objection suspends from checks (`subject_suspended`).
- `journal`: the ``journal`` hook every state-changing function takes (the caller's audit entry, written in the
  transaction of the change).

Internals: `_tables` (this package's SQLAlchemy ``metadata``), `_exact`, `_canonical`, `_clock`.
Dependency rule: `policies` imports `catalog` only.
"""

from policies._tables import metadata
from policies.access import Permit, authorize, check, permit, read_budget, read_usage, submission_context
from policies.actor import Actor, Role
from policies.agreements.document import AgreementDocument, parse_document
from policies.agreements.filing import (
    Order,
    SignOff,
    activate,
    authority_resume,
    authority_suspend,
    close_order,
    issue_order,
    list_orders,
    load_order,
    new_order_id,
    note_migration,
    refuse,
    reviews,
    unnoted_migrations,
)
from policies.agreements.filing import file as file_agreement
from policies.agreements.filing import submit as submit_for_filing
from policies.agreements.lifecycle import (
    accept,
    agreement_in,
    amend_agreement,
    create_agreement,
    get_agreement,
    list_agreements,
    new_agreement_id,
    record_expiries,
    record_expiry,
    resume,
    revoke,
    suspend,
)
from policies.agreements.record import Agreement, effective_state, load_agreement, outputs_sealed
from policies.agreements.signing import Signature
from policies.agreements.signing import sign as sign_agreement
from policies.agreements.signing import signatures as agreement_signatures
from policies.budget import Budget, BudgetError
from policies.decision import Action, Decision, DecisionContext, QuotaUsage, Reason, decide
from policies.disposal import agreement_disposals as _agreement_disposals  # noqa: F401  (declares the table)
from policies.jobs import (
    Job,
    JobKind,
    JobOutput,
    JobResult,
    JobState,
    Swept,
    approve,
    cancel,
    claim_next,
    fail,
    finish,
    get_job,
    get_result,
    job_in,
    job_output,
    jobs_visible_to,
    list_jobs,
    new_job_id,
    reject,
    release,
    renew_lease,
    spec_hash,
    start,
    submit,
    succeed,
    sweep_expired,
)
from policies.journal import Journal
from policies.ledger import BudgetStatus, charge, refund, remaining
from policies.negative_list import EntryKind, NegativeEntry, NegativeList, add_entry, list_entries, remove_entry
from policies.quotas import Usage, params_digest, usage
from vocab.states import AgreementState

__all__ = [
    "Action",
    "Actor",
    "Agreement",
    "AgreementDocument",
    "AgreementState",
    "Budget",
    "BudgetError",
    "BudgetStatus",
    "Decision",
    "DecisionContext",
    "EntryKind",
    "Job",
    "JobKind",
    "JobOutput",
    "JobResult",
    "JobState",
    "Journal",
    "NegativeEntry",
    "NegativeList",
    "Order",
    "Permit",
    "QuotaUsage",
    "Reason",
    "Role",
    "SignOff",
    "Signature",
    "Swept",
    "Usage",
    "accept",
    "activate",
    "add_entry",
    "agreement_in",
    "agreement_signatures",
    "amend_agreement",
    "approve",
    "authority_resume",
    "authority_suspend",
    "authorize",
    "cancel",
    "charge",
    "check",
    "claim_next",
    "close_order",
    "create_agreement",
    "decide",
    "effective_state",
    "fail",
    "file_agreement",
    "finish",
    "get_agreement",
    "get_job",
    "get_result",
    "issue_order",
    "job_in",
    "job_output",
    "jobs_visible_to",
    "list_agreements",
    "list_entries",
    "list_jobs",
    "list_orders",
    "load_agreement",
    "load_order",
    "metadata",
    "new_agreement_id",
    "new_job_id",
    "new_order_id",
    "note_migration",
    "outputs_sealed",
    "params_digest",
    "parse_document",
    "permit",
    "read_budget",
    "read_usage",
    "record_expiries",
    "record_expiry",
    "refund",
    "refuse",
    "reject",
    "release",
    "remaining",
    "remove_entry",
    "renew_lease",
    "resume",
    "reviews",
    "revoke",
    "sign_agreement",
    "spec_hash",
    "start",
    "submission_context",
    "submit",
    "submit_for_filing",
    "succeed",
    "suspend",
    "sweep_expired",
    "unnoted_migrations",
    "usage",
]
