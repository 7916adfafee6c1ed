"""The consent registry (同意登记): recording (owner, trustee), reading, revoking, and `require` refusing every use
a consent does not cover (missing, unknown, another grantee, another product, revoked, expired, another subject,
repeated) from the consent records alone."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from catalog.errors import CONSENT_INVALID, CONSENT_REQUIRED, INVALID_REQUEST, NOT_FOUND_OR_FORBIDDEN, DomainError
from catalog.products import ProductSpec, define_product
from policies import consent as cs

World = Any  # the `world` fixture (tests/unit/policies/conftest.py)
A, B = "hs:" + "ab" * 16, "hs:" + "cd" * 16
PSI = cs.psi_product("tax_income")
SQLITE = pytest.mark.parametrize("store", ["sqlite"])  # the new SQL runs on both stores in the first test only


def _product(world: World) -> str:
    spec = ProductSpec(name="income_at_least", dataset="tax_income", subject_column="person_id",
                       predicate="monthly_income >= :threshold", params={"threshold": "number"})
    return define_product(world.engine, world.owner.name, spec).name


def _record(world: World, who: Any = None, **kw: Any) -> list[cs.Consent]:
    args: dict[str, Any] = {"owner": world.owner.name, "subject_hashes": [A], "grantee": world.bank.name,
                            "scenario": "loan application income check", "products": [PSI],
                            "valid_until": world.now + dt.timedelta(days=30), "now": world.now}
    args.update(kw)
    return cs.record(world.engine, who or world.owner, **args)


def _reason(world: World, ids: list[str], **kw: Any) -> tuple[str, list[dict[str, Any]]]:
    args: dict[str, Any] = {"grantee": world.bank.name, "owner": world.owner.name, "product": PSI,
                            "now": world.now + dt.timedelta(days=1)}
    args.update(kw)
    with pytest.raises(DomainError) as e:
        cs.require(world.engine, ids, **args)
    return e.value.code, e.value.details


def test_record_require_revoke_on_both_stores(world: World) -> None:
    product = _product(world)
    (c,) = _record(world, products=[product, PSI])
    assert c.state(world.now) == "valid" and c.products == (product, PSI) and c.subject_hash == A
    later = world.now + dt.timedelta(days=1)
    ok = {"grantee": world.bank.name, "owner": world.owner.name, "now": later}
    assert cs.require(world.engine, [c.id], product=product, subject_hashes=[A], **ok) == [c.id]
    assert cs.require(world.engine, [c.id], product=PSI, **ok) == [c.id]  # no subject seen: ids only
    # who reads: owner, recorder, grantee; nobody else
    for who in (world.owner, world.bank):
        assert [x.id for x in cs.list_consents(world.engine, who)] == [c.id]
        assert cs.show_consent(world.engine, who, c.id).id == c.id
    assert cs.list_consents(world.engine, world.stranger) == []
    with pytest.raises(DomainError) as e:
        cs.show_consent(world.engine, world.stranger, c.id)
    assert e.value.code == NOT_FOUND_OR_FORBIDDEN
    assert [x.id for x in cs.list_consents(world.engine, world.owner, subject_hash=B)] == []
    # revocation takes effect on the next call; the grantee cannot revoke, nor revoke twice
    with pytest.raises(DomainError) as e:
        cs.revoke(world.engine, world.bank, c.id, "no", now=later)
    assert e.value.code == NOT_FOUND_OR_FORBIDDEN
    with pytest.raises(DomainError) as e:
        cs.revoke(world.engine, world.owner, c.id, "  ", now=later)
    assert e.value.code == INVALID_REQUEST
    r = cs.revoke(world.engine, world.owner, c.id, "the person withdrew", now=later)
    assert (r.state(later), r.revoke_reason, r.revoked_by) == ("revoked", "the person withdrew", world.owner.name)
    assert _reason(world, [c.id], product=product, subject_hashes=[A]) == (
        CONSENT_INVALID, [{"index": 0, "reason": "consent.revoked"}])
    with pytest.raises(DomainError):
        cs.revoke(world.engine, world.owner, c.id, "again", now=later)


@SQLITE
def test_every_uncovered_use_is_refused(world: World) -> None:
    product = _product(world)
    (c,) = _record(world, products=[PSI])
    (d,) = _record(world, subject_hashes=[B], products=[product])
    assert _reason(world, []) == (CONSENT_REQUIRED, [{"reason": "consent.missing", "expected": 1, "given": 0}])
    assert _reason(world, [" "])[0] == CONSENT_REQUIRED
    assert _reason(world, [c.id], expected=2)[0] == CONSENT_REQUIRED  # the count must match the batch
    unknown = [{"index": 0, "reason": "consent.unknown"}]
    assert _reason(world, ["cns_0000000000000000"]) == (CONSENT_INVALID, unknown)
    assert _reason(world, ["free text reference"]) == (CONSENT_INVALID, unknown)
    # another grantee's consent is refused exactly like an unknown id
    assert _reason(world, [c.id], grantee=world.stranger.name) == (CONSENT_INVALID, unknown)
    assert _reason(world, [c.id], product=product)[1] == [{"index": 0, "reason": "consent.product"}]
    assert _reason(world, [c.id], owner=world.other_owner.name)[1] == [{"index": 0, "reason": "consent.product"}]
    assert _reason(world, [c.id], now=world.now + dt.timedelta(days=31))[1] == [
        {"index": 0, "reason": "consent.expired"}]
    assert _reason(world, [c.id], now=world.now - dt.timedelta(seconds=1))[1] == [
        {"index": 0, "reason": "consent.not_yet_valid"}]
    assert _reason(world, [d.id], product=product, subject_hashes=[A])[1] == [
        {"index": 0, "reason": "consent.subject"}]
    assert _reason(world, [c.id, c.id], expected=2)[1] == [{"index": 1, "reason": "consent.repeated"}]


@SQLITE
def test_recording_rules_and_trustees(world: World) -> None:
    _product(world)
    for kw, reason in (
        ({"products": ["psi_members:social_insurance"]}, "product.unknown"),  # another owner's dataset
        ({"products": ["no_such_product"]}, "product.unknown"),
        ({"subject_hashes": ["P0001"]}, "subject.hash"),  # never a raw id
        ({"scenario": " "}, "scenario.length"),
        ({"valid_until": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)}, "window.invalid"),
        ({"valid_until": dt.datetime(2036, 1, 1, tzinfo=dt.UTC)}, "window.invalid"),
    ):
        with pytest.raises(DomainError) as e:
            _record(world, **kw)
        assert e.value.code == INVALID_REQUEST and e.value.details[0]["reason"] == reason, kw
    with pytest.raises(DomainError) as e:  # not the owner, not its trustee
        _record(world, world.bank)
    assert e.value.code == NOT_FOUND_OR_FORBIDDEN
    cs.add_trustee(world.engine, world.owner, world.bank.name, now=world.now)
    assert cs.list_trustees(world.engine, world.owner.name) == [world.bank.name]
    batch = _record(world, world.bank, subject_hashes=[A, B])
    assert [c.recorded_by for c in batch] == [world.bank.name] * 2 and len({c.id for c in batch}) == 2
    cs.revoke(world.engine, world.bank, batch[0].id, "withdrawn at the counter", now=world.now)
    cs.remove_trustee(world.engine, world.owner, world.bank.name)
    with pytest.raises(DomainError) as e:
        _record(world, world.bank)
    assert e.value.code == NOT_FOUND_OR_FORBIDDEN
    with pytest.raises(DomainError) as e:  # only owners name trustees
        cs.add_trustee(world.engine, world.bank, "x", now=world.now)
    assert e.value.code == NOT_FOUND_OR_FORBIDDEN
