"""Agreement documents, creation checks against the catalog, versions, and the lifecycle."""

from __future__ import annotations

import datetime as dt
import json
from fractions import Fraction
from typing import Any

import pytest
from sqlalchemy import select

import policies
from catalog.errors import (
    AGREEMENT_INACTIVE,
    INVALID_REQUEST,
    NOT_FOUND_OR_FORBIDDEN,
    POLICY_DENIED,
    DomainError,
)
from policies import Actor, AgreementDocument, AgreementState, ledger
from policies import _tables as t

World = Any  # the `world` fixture (tests/unit/policies/conftest.py)


def reasons(err: DomainError) -> list[str]:
    return [d["reason"] for d in err.details]


# --- the document -----------------------------------------------------------------------------------------


def test_document_is_normalised_and_exact(world: World) -> None:
    doc = AgreementDocument.model_validate(world.document(
        datasets=["tax_income", "enterprise_registry"], purposes=["credit_risk", "audit"],
        valid_from="2026-01-01T08:00:00+08:00"))
    assert doc.datasets == ("enterprise_registry", "tax_income")
    assert doc.purposes == ("audit", "credit_risk")
    assert doc.valid_from == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert doc.budget.epsilon == Fraction(1) and doc.budget.delta == Fraction(1, 10**6)
    assert doc.as_json()["budget"] == {"epsilon": "1", "delta": "0.000001"}
    assert doc.quotas.distinct_params_per_subject == 3  # default


def test_hash_is_canonical(world: World) -> None:
    a = AgreementDocument.model_validate(world.document())
    b = AgreementDocument.model_validate(world.document(
        datasets=["enterprise_registry", "tax_income"], budget={"epsilon": "1.0", "delta": "0.000001"},
        valid_from="2026-01-01T08:00:00+08:00"))
    assert a.digest() == b.digest()
    assert a.digest().startswith("sha256:")
    c = AgreementDocument.model_validate(world.document(budget={"epsilon": "1.1", "delta": 1e-6}))
    assert c.digest() != a.digest()
    assert AgreementDocument.model_validate(json.loads(a.canonical_json())) == a


MALFORMED: list[tuple[str, dict[str, Any]]] = [
    ("extra field", {"surprise": 1}),
    ("unknown job kind", {"job_kinds": ["query", "mine_bitcoin"]}),
    ("empty job kinds", {"job_kinds": []}),
    ("duplicate dataset", {"datasets": ["tax_income", "tax_income"]}),
    ("columns keys differ", {"columns": {"tax_income": ["age"]}}),
    ("empty column list", {"columns": {"tax_income": [], "enterprise_registry": ["district"]}}),
    ("naive datetime", {"valid_from": "2026-01-01T00:00:00"}),
    ("window reversed", {"valid_from": "2027-01-01T00:00:00Z", "valid_until": "2026-01-01T00:00:00Z"}),
    ("negative epsilon", {"budget": {"epsilon": -1, "delta": 0}}),
    ("nan epsilon", {"budget": {"epsilon": "nan"}}),
    ("infinite epsilon", {"budget": {"epsilon": float("inf")}}),
    ("delta one", {"budget": {"epsilon": 1, "delta": 1}}),
    ("budget extra", {"budget": {"epsilon": 1, "rho": 2}}),
    ("bad approval", {"approval": "whenever"}),
    ("bad exit", {"exit": {"on_expiry": "publish"}}),
    ("bad purpose", {"purposes": ["Credit Risk"]}),
    ("negative quota", {"quotas": {"calls_per_day": -1}}),
    ("quota extra", {"quotas": {"calls_per_hour": 5}}),
    ("bad currency", {"price": {"per_call": 1, "currency": "yuan"}}),
    ("blank title", {"title": "   "}),
    ("min group zero", {"min_group_units": 0}),
]


@pytest.mark.parametrize(("case", "overrides"), MALFORMED, ids=[c for c, _ in MALFORMED])
def test_malformed_documents_are_invalid_request(world: World, case: str, overrides: dict[str, Any]) -> None:
    with pytest.raises(DomainError) as e:
        world.create(**overrides)
    assert e.value.code == INVALID_REQUEST, case
    assert e.value.details and all("at" in d for d in e.value.details)
    with world.engine.connect() as conn:
        assert conn.execute(select(t.agreements)).first() is None


def test_validation_errors_never_echo_values(world: World) -> None:
    with pytest.raises(DomainError) as e:
        world.create(budget={"epsilon": "SECRET-12345"}, grantee="SECRET 6789")
    text = json.dumps(e.value.details) + e.value.message
    assert "SECRET" not in text


def test_json_schema_is_generated() -> None:
    schema = AgreementDocument.model_json_schema()
    assert "budget" in schema["properties"]


# --- creation against the catalog -------------------------------------------------------------------------


def test_create_proposed_with_accounts(world: World) -> None:
    ag = world.create()
    assert ag.state is AgreementState.PROPOSED and ag.version == 1
    assert ag.owner == world.owner.name and ag.grantee == world.bank.name
    assert ag.document_hash == ag.document.digest()
    accs = ledger.accounts(world.engine, ag.id)
    assert [a.dataset for a in accs] == ["enterprise_registry", "tax_income"]
    assert all(a.total == policies.Budget.parse(1, "1e-6") and a.spent.is_zero for a in accs)
    with world.engine.connect() as conn:
        stored = conn.execute(select(t.budget_accounts.c.epsilon_total, t.budget_accounts.c.delta_total)).all()
    assert set(stored) == {("1/1", "1/1000000")}
    pub = ag.public(world.now)
    assert pub["state"] == "proposed" and pub["budget"] == {"epsilon": "1", "delta": "0.000001"}


def test_only_owners_propose(world: World) -> None:
    with pytest.raises(DomainError) as e:
        policies.create_agreement(world.engine, world.bank, world.document(), now=world.now)
    assert e.value.code == POLICY_DENIED and reasons(e.value) == ["role.not_allowed"]


@pytest.mark.parametrize("dataset", ["social_insurance", "no_such_dataset"])
def test_another_owners_or_missing_dataset_is_not_found(world: World, dataset: str) -> None:
    with pytest.raises(DomainError) as e:
        world.create(datasets=["tax_income", dataset],
                     columns={"tax_income": ["age"], dataset: ["months"]})
    assert e.value.code == NOT_FOUND_OR_FORBIDDEN
    assert e.value.details == [{"reason": "dataset.not_found", "dataset": dataset,
                                "message": "the dataset does not exist or is not yours"}]


def test_columns_must_exist_and_be_shareable(world: World) -> None:
    with pytest.raises(DomainError) as e:
        world.create(columns={"tax_income": ["age", "person_id", "id_number", "salary"],
                              "enterprise_registry": ["district"]})
    assert e.value.code == INVALID_REQUEST
    got = {(d["reason"], d.get("column")) for d in e.value.details}
    assert got == {("column.not_shareable", "person_id"), ("column.not_shareable", "id_number"),
                   ("column.unknown", "salary")}


def test_grantee_is_not_the_owner_and_window_not_over(world: World) -> None:
    with pytest.raises(DomainError) as e:
        world.create(grantee=world.owner.name, valid_from="2025-01-01T00:00:00Z", valid_until="2026-02-01T00:00:00Z")
    assert e.value.code == INVALID_REQUEST
    assert set(reasons(e.value)) == {"grantee.is_owner", "agreement.ends_in_past"}


def test_core_grade_never_under_agreement(world: World) -> None:
    with pytest.raises(DomainError) as e:
        world.create(datasets=["state_secrets"], columns={"state_secrets": ["level"]}, purposes=[])
    assert e.value.code == POLICY_DENIED and reasons(e.value) == ["dataset.core_grade"]


def test_personal_dataset_needs_a_purpose(world: World) -> None:
    with pytest.raises(DomainError) as e:
        world.create(purposes=[])
    assert e.value.code == POLICY_DENIED and reasons(e.value) == ["purpose.missing"]
    ag = world.create(datasets=["enterprise_registry"], columns={"enterprise_registry": ["district"]}, purposes=[])
    assert ag.document.purposes == ()


# --- lifecycle --------------------------------------------------------------------------------------------


def test_accept_inside_window(world: World) -> None:
    ag = world.create()
    out = policies.accept(world.engine, world.bank, ag.id, now=world.now, document_hash=ag.document_hash)
    assert out.state is AgreementState.ACTIVE and out.accepted_at == world.now


def test_accept_before_window_and_after(world: World) -> None:
    ag = world.create(valid_from="2026-06-01T00:00:00Z")
    with pytest.raises(DomainError) as e:
        policies.accept(world.engine, world.bank, ag.id, now=world.now)
    assert e.value.code == AGREEMENT_INACTIVE and reasons(e.value) == ["agreement.not_yet_valid"]
    with pytest.raises(DomainError) as e:
        policies.accept(world.engine, world.bank, ag.id, now=world.valid_until)
    assert e.value.code == AGREEMENT_INACTIVE and reasons(e.value) == ["agreement.expired"]
    assert policies.load_agreement(world.engine, ag.id).state is AgreementState.PROPOSED  # type: ignore[union-attr]


def test_accept_by_wrong_party(world: World) -> None:
    ag = world.create()
    for actor in (world.stranger, world.operator, world.other_owner):
        with pytest.raises(DomainError) as e:
            policies.accept(world.engine, actor, ag.id, now=world.now)
        assert e.value.code == NOT_FOUND_OR_FORBIDDEN and e.value.details == []
    with pytest.raises(DomainError) as e:
        policies.accept(world.engine, world.owner, ag.id, now=world.now)
    assert e.value.code == POLICY_DENIED and reasons(e.value) == ["agreement.wrong_grantee"]
    with pytest.raises(DomainError) as e:
        policies.accept(world.engine, world.regulator, ag.id, now=world.now)
    assert e.value.code == POLICY_DENIED and reasons(e.value) == ["role.not_allowed"]


def test_accept_bound_to_document_hash(world: World) -> None:
    ag = world.create()
    with pytest.raises(DomainError) as e:
        policies.accept(world.engine, world.bank, ag.id, now=world.now, document_hash="sha256:" + "0" * 64)
    assert e.value.code == INVALID_REQUEST


def test_accept_twice_is_inactive_error(world: World) -> None:
    ag = world.active()
    with pytest.raises(DomainError) as e:
        policies.accept(world.engine, world.bank, ag.id, now=world.now)
    assert e.value.code == AGREEMENT_INACTIVE and reasons(e.value) == ["agreement.already_active"]


def test_suspend_resume_revoke(world: World) -> None:
    ag = world.active()
    with pytest.raises(DomainError) as e:
        policies.suspend(world.engine, world.bank, ag.id, now=world.now)
    assert e.value.code == POLICY_DENIED and reasons(e.value) == ["agreement.not_owner"]
    s = policies.suspend(world.engine, world.owner, ag.id, now=world.now)
    assert s.state is AgreementState.SUSPENDED
    with pytest.raises(DomainError) as e:
        policies.suspend(world.engine, world.owner, ag.id, now=world.now)
    assert e.value.code == AGREEMENT_INACTIVE and reasons(e.value) == ["agreement.suspended"]
    assert policies.resume(world.engine, world.owner, ag.id, now=world.now).state is AgreementState.ACTIVE
    r = policies.revoke(world.engine, world.owner, ag.id, now=world.now)
    assert r.state is AgreementState.REVOKED and r.revoked_at == world.now
    for fn in (policies.resume, policies.suspend, policies.revoke):
        with pytest.raises(DomainError) as e:
            fn(world.engine, world.owner, ag.id, now=world.now)
        assert e.value.code == AGREEMENT_INACTIVE and reasons(e.value) == ["agreement.revoked"]


def test_resume_after_expiry_refused(world: World) -> None:
    ag = world.active()
    policies.suspend(world.engine, world.owner, ag.id, now=world.now)
    with pytest.raises(DomainError) as e:
        policies.resume(world.engine, world.owner, ag.id, now=world.valid_until + dt.timedelta(seconds=1))
    assert e.value.code == AGREEMENT_INACTIVE and reasons(e.value) == ["agreement.expired"]


def test_revoke_proposed(world: World) -> None:
    ag = world.create()
    assert policies.revoke(world.engine, world.owner, ag.id, now=world.now).state is AgreementState.REVOKED


def test_expiry_is_derived_and_recorded_once(world: World) -> None:
    ag = world.active()
    later = world.valid_until + dt.timedelta(hours=1)
    assert policies.effective_state(ag, world.now) is AgreementState.ACTIVE
    assert policies.effective_state(ag, world.valid_until) is AgreementState.EXPIRED
    assert policies.record_expiry(world.engine, ag.id, now=world.now) is False
    assert policies.record_expiry(world.engine, ag.id, now=later) is True
    assert policies.record_expiry(world.engine, ag.id, now=later) is False
    stored = policies.load_agreement(world.engine, ag.id)
    assert stored is not None and stored.expired_recorded and stored.expired_recorded_at == later
    assert stored.state is AgreementState.ACTIVE  # the stored state is untouched; expiry is derived
    other = world.active()
    revoked = world.active()
    policies.revoke(world.engine, world.owner, revoked.id, now=world.now)
    assert policies.record_expiries(world.engine, now=later) == [other.id]
    assert policies.record_expiries(world.engine, now=later) == []


@pytest.mark.parametrize(("on_expiry", "sealed"), [("seal_outputs", True), ("keep_outputs", False)])
def test_exit_clause(world: World, on_expiry: str, sealed: bool) -> None:
    ag = world.active(exit={"on_expiry": on_expiry})
    assert not policies.outputs_sealed(ag, world.now)
    assert policies.outputs_sealed(ag, world.valid_until) is sealed
    revoked = policies.revoke(world.engine, world.owner, ag.id, now=world.now)
    assert policies.outputs_sealed(revoked, world.now) is sealed
    assert revoked.public(world.now)["outputs_sealed"] is sealed


def test_suspended_outputs_are_not_sealed(world: World) -> None:
    ag = policies.suspend(world.engine, world.owner, world.active().id, now=world.now)
    assert not policies.outputs_sealed(ag, world.now)


def test_amend_proposed_bumps_version(world: World) -> None:
    ag = world.create()
    amended = policies.amend_agreement(world.engine, world.owner, ag.id,
                                       world.document(budget={"epsilon": 2, "delta": 0}), now=world.now)
    assert amended.version == 2 and amended.document_hash != ag.document_hash
    assert ledger.remaining(world.engine, ag.id)["tax_income"] == policies.Budget.parse(2)
    with pytest.raises(DomainError) as e:  # grantee read version 1
        policies.accept(world.engine, world.bank, ag.id, now=world.now, document_hash=ag.document_hash)
    assert e.value.code == INVALID_REQUEST
    policies.accept(world.engine, world.bank, ag.id, now=world.now, document_hash=amended.document_hash)
    with pytest.raises(DomainError) as e:
        policies.amend_agreement(world.engine, world.owner, ag.id, world.document(), now=world.now)
    assert e.value.code == AGREEMENT_INACTIVE
    with world.engine.connect() as conn:
        versions = conn.execute(select(t.agreement_versions.c.version).order_by(t.agreement_versions.c.version))
        assert list(versions.scalars()) == [1, 2]


def test_amend_by_another_owner_is_not_found(world: World) -> None:
    ag = world.create()
    with pytest.raises(DomainError) as e:
        policies.amend_agreement(world.engine, world.other_owner, ag.id, world.document(), now=world.now)
    assert e.value.code == NOT_FOUND_OR_FORBIDDEN


def test_read_and_list_visibility(world: World) -> None:
    mine = world.create()
    ops = world.create(grantee=world.operator.name)
    assert policies.get_agreement(world.engine, world.bank, mine.id, now=world.now).id == mine.id
    assert policies.get_agreement(world.engine, world.regulator, mine.id, now=world.now).id == mine.id
    for actor in (world.stranger, world.operator, world.other_owner, Actor("root", "admin")):
        with pytest.raises(DomainError) as e:
            policies.get_agreement(world.engine, actor, mine.id, now=world.now)
        assert e.value.code == NOT_FOUND_OR_FORBIDDEN and e.value.details == []
    with pytest.raises(DomainError) as e:
        policies.get_agreement(world.engine, world.bank, "agr_missing", now=world.now)
    assert e.value.code == NOT_FOUND_OR_FORBIDDEN
    ids = lambda actor, **kw: [a.id for a in policies.list_agreements(world.engine, actor, now=world.now, **kw)]  # noqa: E731
    assert ids(world.bank) == [mine.id]
    assert ids(world.operator) == [ops.id]
    assert sorted(ids(world.owner)) == sorted([mine.id, ops.id])
    assert sorted(ids(world.regulator)) == sorted([mine.id, ops.id])
    assert ids(world.stranger) == [] and ids(world.other_owner) == []
    policies.accept(world.engine, world.bank, mine.id, now=world.now)
    assert ids(world.owner, state="active") == [mine.id]
    assert sorted(ids(world.owner, state="expired")) == []
    later = policies.list_agreements(world.engine, world.owner, now=world.valid_until, state="expired")
    assert sorted(a.id for a in later) == sorted([mine.id, ops.id])
