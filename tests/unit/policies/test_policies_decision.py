"""`decide`: the roles × actions × agreement-states matrix, every reason collected, the error mapping."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import Engine

import policies
from catalog import registry
from catalog.columns import Grade
from catalog.errors import (
    AGREEMENT_INACTIVE,
    BUDGET_EXHAUSTED,
    NOT_FOUND_OR_FORBIDDEN,
    POLICY_DENIED,
    QUOTA_EXCEEDED,
)
from catalog.registry import Dataset
from catalog.store import make_engine
from policies import Action, Actor, Agreement, AgreementState, Budget, DecisionContext, QuotaUsage, decide
from policies.negative_list import NegativeList

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
AFTER = dt.datetime(2027, 2, 1, tzinfo=dt.UTC)  # past valid_until
ROLES = ("admin", "owner", "operator", "bank", "regulator", "authority")
STATES = ("proposed", "accepted", "under_review", "returned", "filed", "active", "suspended", "revoked", "expired")
ALL = " ".join(STATES)
READERS = "owner operator bank regulator authority"

# The expected matrix, written from the specification (docs/api.md + the issue), not from the code: for each action,
# the roles that may take it when they are the natural party (owner = the agreement's owner, operator/bank = its
# grantee, regulator = any regulator, authority = the data authority;
# admin is never a party), and the agreement states in which it is allowed.
EXPECTED: dict[str, tuple[str, str]] = {
    "agreement.read": (READERS, ALL),
    "agreement.accept": ("operator bank", "proposed"),
    "agreement.sign": ("", "proposed"),  # only a co-owner (none of the natural parties): test_policies_revenue.py
    "agreement.suspend": ("owner", "active"),
    "agreement.resume": ("owner", "suspended"),
    "agreement.revoke": ("owner", "proposed accepted under_review returned filed active suspended"),
    "agreement.submit": ("owner", "accepted returned"),
    "agreement.file": ("authority", "under_review"),
    "agreement.refuse": ("authority", "under_review"),
    "agreement.activate": ("owner", "filed"),
    "authority.suspend": ("authority", "active suspended"),  # suspended by its owner: the authority takes it over
    "authority.resume": ("authority", "suspended"),  # only a suspension by the authority (see the cells' agreement)
    "order.issue": ("authority", "proposed accepted under_review returned filed active suspended"),
    "order.close": ("authority", ALL),
    "agreement.reviewers": ("authority", "under_review"),
    "agreement.review": ("reviewer", "under_review"),  # only a reviewer the authority named (else a stranger)
    "query.preview": ("operator bank", "active"),
    "query.run": ("operator bank", "active"),
    "job.submit": ("operator bank", "active"),
    "job.read": (READERS, ALL),
    "job.approve": ("owner", "active"),
    "job.reject": ("owner", ALL),
    "job.cancel": ("owner operator bank", ALL),
    "job.result": ("operator bank", "active"),  # exit clause seal_outputs
    "verify.check": ("bank", "active"),
    "verify.anonymous": ("bank", "active"),
    "psi.size": ("bank", "active"),
    "psi.members": ("bank", "active"),
    "model.score": ("bank", "active"),
    "secagg.aggregate": ("operator", "active"),
    "usage.read": (READERS, ALL),
    "budget.read": (READERS, ALL),
}
# Under exit.on_expiry = "keep_outputs", results of an ended agreement stay downloadable (not while suspended).
KEEP_OUTPUTS_RESULT_STATES = {"active", "expired", "revoked"}


def test_the_table_covers_every_action() -> None:
    assert set(EXPECTED) == {a.value for a in Action}


OWNER_NAME, OPERATOR_NAME, BANK_NAME = "tax-bureau", "city-ops", "icbc-wuxi"


@pytest.fixture(scope="module")
def records(template_db: Any) -> dict[str, Dataset | None]:
    engine: Engine = make_engine(f"sqlite:///{template_db}")
    try:
        return {n: registry.get(engine, n) for n in ("tax_income", "enterprise_registry")}
    finally:
        engine.dispose()


def make_agreement(grantee: str, state: str, suspended_by: str | None = None, **doc: Any) -> Agreement:
    document = policies.AgreementDocument.model_validate({
        "title": "t", "grantee": grantee, "datasets": ["tax_income", "enterprise_registry"],
        "columns": {"tax_income": ["age", "monthly_income", "district"], "enterprise_registry": ["employees"]},
        "purposes": ["credit_risk"], "job_kinds": ["query", "train", "code", "verify", "score", "secagg", "psi_size",
                                                   "psi_members", "verify_anonymous"],
        "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z",
        "budget": {"epsilon": 1, "delta": "1e-6"}, **doc,
    })
    stored = "active" if state == "expired" else state
    return Agreement(
        id="agr_x", owner=OWNER_NAME, grantee=grantee, state=AgreementState(stored), version=1,
        document_hash=document.digest(), document=document, created_at=NOW, updated_at=NOW, accepted_at=None,
        suspended_at=None, revoked_at=None, expired_recorded=False, expired_recorded_at=None,
        suspended_by=suspended_by,
    )


def context(actor: Actor, action: str, ag: Agreement | None, state: str,
            records: dict[str, Dataset | None], **kw: Any) -> DecisionContext:
    fields: dict[str, Any] = {
        "datasets": records,
        "requested": ("tax_income",),
        "columns": {"tax_income": frozenset({"age", "monthly_income"})},
        "purpose": "credit_risk",
        "job_kind": "query",
        "consent_ref": "consent-1",
        "usage": QuotaUsage(),
        "cost": Budget.parse("0.1"),
        "remaining": {"tax_income": Budget.parse(1, "1e-6"), "enterprise_registry": Budget.parse(1, "1e-6")},
        "fingerprints": {n: r.fingerprint for n, r in records.items() if r} if action == "job.approve" else None,
    }
    fields.update(kw)
    return DecisionContext(actor=actor, action=Action(action), now=AFTER if state == "expired" else NOW,
                           agreement=ag, **fields)


def actor_for(role: str) -> tuple[Actor, str]:
    """The natural party for a role, and the grantee of the agreement used for its cells."""
    if role == "owner":
        return Actor(OWNER_NAME, role), BANK_NAME
    if role == "operator":
        return Actor(OPERATOR_NAME, role), OPERATOR_NAME
    if role == "bank":
        return Actor(BANK_NAME, role), BANK_NAME
    return Actor({"admin": "root", "regulator": "cac-wuxi", "authority": "data-bureau"}[role], role), BANK_NAME


def expected_code(role: str, action: str, state: str, roles: set[str], states: set[str]) -> str | None:
    if role == "admin":
        return NOT_FOUND_OR_FORBIDDEN
    if state not in states:
        return AGREEMENT_INACTIVE
    if role not in roles:
        return POLICY_DENIED
    return None


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("action", sorted(EXPECTED))
@pytest.mark.parametrize("role", ROLES)
def test_matrix(role: str, action: str, state: str, records: dict[str, Dataset | None]) -> None:
    roles, states = (set(x.split()) for x in EXPECTED[action])
    actor, grantee = actor_for(role)
    by = "authority" if action == "authority.resume" else None
    decision = decide(context(actor, action, make_agreement(grantee, state, by), state, records))
    want = expected_code(role, action, state, roles, states)
    assert decision.allow is (want is None), decision.codes
    err = decision.error()
    assert (err.code if err else None) == want, decision.codes
    if want == NOT_FOUND_OR_FORBIDDEN:
        assert err is not None and err.details == []


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("role", ROLES)
def test_matrix_results_keep_outputs(role: str, state: str, records: dict[str, Dataset | None]) -> None:
    actor, grantee = actor_for(role)
    ag = make_agreement(grantee, state, exit={"on_expiry": "keep_outputs"})
    decision = decide(context(actor, "job.result", ag, state, records))
    want = expected_code(role, "job.result", state, {"operator", "bank"}, KEEP_OUTPUTS_RESULT_STATES)
    err = decision.error()
    assert (err.code if err else None) == want, decision.codes


STRANGERS = [Actor("other-bank", "bank"), Actor("other-ops", "operator"), Actor("hr-bureau", "owner"),
             Actor("root", "admin")]


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("action", sorted(EXPECTED))
@pytest.mark.parametrize("stranger", STRANGERS, ids=lambda a: a.name)
def test_strangers_never_learn_the_agreement_exists(stranger: Actor, action: str, state: str,
                                                    records: dict[str, Dataset | None]) -> None:
    decision = decide(context(stranger, action, make_agreement(BANK_NAME, state), state, records))
    err = decision.error()
    assert err is not None and err.code == NOT_FOUND_OR_FORBIDDEN and err.details == []
    assert err.message == "agreement not found"


def test_missing_agreement(records: dict[str, Dataset | None]) -> None:
    decision = decide(context(Actor(BANK_NAME, "bank"), "query.run", None, "active", records))
    assert decision.codes == ("agreement.not_found",)
    err = decision.error()
    assert err is not None and err.code == NOT_FOUND_OR_FORBIDDEN


BANK = Actor(BANK_NAME, "bank")


def run(records: dict[str, Dataset | None], action: str = "query.run", state: str = "active",
        doc: dict[str, Any] | None = None, **kw: Any) -> policies.Decision:
    return decide(context(BANK, action, make_agreement(BANK_NAME, state, **(doc or {})), state, records, **kw))


def test_every_reason_is_reported(records: dict[str, Dataset | None]) -> None:
    d = run(
        records,
        requested=("tax_income", "social_insurance"),
        columns={"tax_income": frozenset({"age", "id_number", "employer_id"})},
        purpose="marketing",
        job_kind="train",
        negative_list=NegativeList(purposes=frozenset({"marketing"}), columns=frozenset({"tax_income.age"})),
        usage=QuotaUsage(calls_today=10_000, jobs_today=100),
        cost=Budget.parse(2),
        doc={"job_kinds": ["train"]},
    )
    assert not d.allow
    assert set(d.codes) == {
        "job_kind.not_allowed",
        "dataset.outside_agreement",
        "column.outside_agreement",
        "column.negative_list",
        "purpose.outside_agreement",
        "purpose.negative_list",
        "quota.calls_per_day",
        "quota.jobs_per_day",
        "budget.insufficient",
    }
    cols = {r.column for r in d.reasons if r.code == "column.outside_agreement"}
    assert cols == {"id_number", "employer_id"}
    err = d.error()
    assert err is not None and err.code == BUDGET_EXHAUSTED  # budget outranks quota and policy
    assert {x["reason"] for x in err.details} == set(d.codes)


def test_precedence_state_over_budget_over_quota(records: dict[str, Dataset | None]) -> None:
    kw: dict[str, Any] = {"usage": QuotaUsage(calls_today=10_000), "cost": Budget.parse(5)}
    assert run(records, state="suspended", **kw).error().code == AGREEMENT_INACTIVE  # type: ignore[union-attr]
    assert run(records, **kw).error().code == BUDGET_EXHAUSTED  # type: ignore[union-attr]
    assert run(records, usage=QuotaUsage(calls_today=10_000)).error().code == QUOTA_EXCEEDED  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kw", "code"),
    [
        ({"columns": {"tax_income": frozenset({"id_number"})}}, "column.outside_agreement"),
        ({"columns": {"social_insurance": frozenset({"months"})}}, "dataset.outside_agreement"),
        ({"requested": ("social_insurance",)}, "dataset.outside_agreement"),
        ({"purpose": "marketing"}, "purpose.outside_agreement"),
        ({"negative_list": NegativeList(datasets=frozenset({"enterprise_registry"}))}, "dataset.negative_list"),
        ({"negative_list": NegativeList(columns=frozenset({"enterprise_registry.employees"}))},
         "column.negative_list"),
        ({"negative_list": NegativeList(purposes=frozenset({"credit_risk"}))}, "purpose.negative_list"),
        ({"usage": QuotaUsage(jobs_today=100)}, "quota.jobs_per_day"),
        ({"cost": Budget.parse("0.5", "1e-5")}, "budget.insufficient"),
        ({"remaining": {"tax_income": Budget.parse("0.05")}}, "budget.insufficient"),
    ],
)
def test_single_reasons(records: dict[str, Dataset | None], kw: dict[str, Any], code: str) -> None:
    d = run(records, **kw)
    assert d.codes == (code,)


def test_job_kind_of_submitted_job(records: dict[str, Dataset | None]) -> None:
    assert run(records, "job.submit", job_kind="code", doc={"job_kinds": ["query"]}).codes == (
        "job_kind.not_allowed",)
    assert run(records, "job.submit", job_kind=None).codes == ("job_kind.not_allowed",)
    assert run(records, "model.score", doc={"job_kinds": ["query"]}).codes == ("job_kind.not_allowed",)


def test_core_grade_and_missing_datasets_block_existing_agreements(records: dict[str, Dataset | None]) -> None:
    tax = records["tax_income"]
    assert tax is not None
    core = dataclasses.replace(tax, grade=Grade.CORE)
    assert run(records, datasets={**records, "tax_income": core}).codes == ("dataset.core_grade",)
    assert run(records, datasets={**records, "tax_income": None}).codes == ("dataset.missing",)


def test_personal_data_needs_purpose_and_consent(records: dict[str, Dataset | None]) -> None:
    assert run(records, doc={"purposes": []}, purpose=None).codes == ("purpose.missing",)
    verify: dict[str, Any] = {"columns": {"tax_income": frozenset({"monthly_income"})}}
    assert run(records, "verify.check", consent_ref=None, **verify).codes == ("consent.missing",)
    assert run(records, "verify.check", consent_ref="  ", **verify).codes == ("consent.missing",)
    assert run(records, "verify.check", **verify).allow
    # non-personal dataset: no consent needed
    assert run(records, "verify.check", consent_ref=None, requested=("enterprise_registry",),
               columns={"enterprise_registry": frozenset({"employees"})}).allow


def test_verification_quotas(records: dict[str, Dataset | None]) -> None:
    used = QuotaUsage(verifies_subject_today=3)
    assert run(records, "verify.check", usage=used).codes == ("quota.verify_per_subject_per_day",)
    new_param = QuotaUsage(distinct_params=3, param_is_new=True)
    assert run(records, "verify.check", usage=new_param).codes == ("quota.distinct_params_per_subject",)
    known_param = QuotaUsage(distinct_params=3, param_is_new=False)
    assert run(records, "verify.check", usage=known_param).allow
    assert run(records, "model.score", usage=QuotaUsage(scores_today=10_000)).codes == ("quota.scores_per_day",)


def test_changed_fingerprint(records: dict[str, Dataset | None]) -> None:
    owner = Actor(OWNER_NAME, "owner")
    ag = make_agreement(BANK_NAME, "active")
    ctx = context(owner, "job.approve", ag, "active", records, fingerprints={"tax_income": "sha256:" + "0" * 64})
    d = decide(ctx)
    assert d.codes == ("dataset.changed",)
    assert d.error().code == POLICY_DENIED  # type: ignore[union-attr]


def test_not_yet_valid_accept(records: dict[str, Dataset | None]) -> None:
    ag = make_agreement(BANK_NAME, "proposed", valid_from="2026-06-01T00:00:00Z")
    d = decide(context(BANK, "agreement.accept", ag, "proposed", records))
    assert d.codes == ("agreement.not_yet_valid",)
    assert d.error().code == AGREEMENT_INACTIVE  # type: ignore[union-attr]


def test_malformed_purpose_is_not_echoed(records: dict[str, Dataset | None]) -> None:
    d = run(records, purpose="income of P0001 is 12000")
    assert d.codes == ("purpose.outside_agreement",)
    assert "purpose" not in d.reasons[0].as_dict()


def test_details_carry_names_not_values(records: dict[str, Dataset | None]) -> None:
    d = run(records, columns={"tax_income": frozenset({"id_number"})})
    err = d.error()
    assert err is not None
    assert err.details == [{"reason": "column.outside_agreement", "dataset": "tax_income", "column": "id_number",
                            "message": "the column is not covered by the agreement"}]


def test_context_needs_aware_time() -> None:
    with pytest.raises(ValueError):
        DecisionContext(actor=BANK, action=Action.QUERY_RUN, now=dt.datetime(2026, 1, 1), agreement=None)
