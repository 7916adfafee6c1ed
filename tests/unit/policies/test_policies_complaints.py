"""Complaints and objections: filing, routing, who reads and moves them, and an objection suspending a subject."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from catalog.errors import INVALID_REQUEST, NOT_FOUND_OR_FORBIDDEN, DomainError
from policies import Actor
from policies import complaints as cp

World = Any  # the `world` fixture (tests/unit/policies/conftest.py)
AUTHORITY = Actor("data-authority", "authority")
SUBJECT = "hs:" + "ab" * 16


def test_lifecycle_routing_visibility_and_deadline(world: World) -> None:
    ag = world.active()
    c = cp.file_complaint(world.engine, world.bank, kind="complaint", target_kind="agreement", target=ag.id,
                          text="the owner's data was stale", days=10, now=world.now)
    assert (c.state, c.owner, c.filer, c.deadline) == ("open", world.owner.name, world.bank.name,
                                                       world.now + dt.timedelta(days=10))
    for who in (world.bank, world.owner, world.regulator, world.admin, AUTHORITY):
        assert cp.show_complaint(world.engine, who, c.id).id == c.id
        assert [x.id for x in cp.list_complaints(world.engine, who)] == [c.id]
    for who in (world.stranger, world.other_owner):
        with pytest.raises(DomainError) as e:
            cp.show_complaint(world.engine, who, c.id)
        assert e.value.code == NOT_FOUND_OR_FORBIDDEN
        assert cp.list_complaints(world.engine, who) == []
    for who in (world.bank, world.regulator):  # the filer (not the owner) and regulators do not decide
        with pytest.raises(DomainError) as e:
            cp.transition(world.engine, who, c.id, "investigating", now=world.now)
        assert e.value.code == NOT_FOUND_OR_FORBIDDEN
    c = cp.transition(world.engine, world.owner, c.id, "investigating", now=world.now)
    with pytest.raises(DomainError) as e:  # a decision states its reasons
        cp.transition(world.engine, AUTHORITY, c.id, "resolved", now=world.now)
    assert e.value.code == INVALID_REQUEST
    c = cp.transition(world.engine, AUTHORITY, c.id, "resolved", reasons=["data refreshed"], now=world.now)
    assert c.state == "resolved" and [h["state"] for h in c.history] == ["open", "investigating", "resolved"]
    assert c.history[-1]["reasons"] == ["data refreshed"] and c.history[-1]["by"] == AUTHORITY.name
    with pytest.raises(DomainError) as e:  # decided once
        cp.transition(world.engine, world.owner, c.id, "rejected", reasons=["no"], now=world.now)
    assert e.value.code == INVALID_REQUEST


def test_filing_refusals(world: World) -> None:
    ag = world.active()
    with pytest.raises(DomainError) as e:  # regulators read only
        cp.file_complaint(world.engine, world.regulator, kind="complaint", target_kind="agreement", target=ag.id,
                          text="x", now=world.now)
    assert e.value.code == NOT_FOUND_OR_FORBIDDEN
    with pytest.raises(DomainError) as e:  # not a party: as if the agreement did not exist
        cp.file_complaint(world.engine, world.stranger, kind="complaint", target_kind="agreement", target=ag.id,
                          text="x", now=world.now)
    assert e.value.code == NOT_FOUND_OR_FORBIDDEN
    with pytest.raises(DomainError) as e:  # a subject only as its keyed hash
        cp.file_complaint(world.engine, world.owner, kind="objection", target_kind="subject",
                          subject_hash="P0001", text="x", now=world.now)
    assert e.value.code == INVALID_REQUEST


def test_an_owners_objection_suspends_the_subject_until_decided(world: World) -> None:
    ag = world.active()
    other = world.active(grantee=world.operator.name)
    assert not cp.subject_suspended(world.engine, ag.id, [SUBJECT])
    # a bank's objection naming a subject is routed, but suspends nothing
    cp.file_complaint(world.engine, world.bank, kind="objection", target_kind="subject", subject_hash=SUBJECT,
                      agreement_id=ag.id, text="x", now=world.now)
    assert not cp.subject_suspended(world.engine, ag.id, [SUBJECT])
    c = cp.file_complaint(world.engine, world.owner, kind="objection", target_kind="subject", subject_hash=SUBJECT,
                          text="the person objects to credit checks", now=world.now)
    assert c.on_behalf and c.suspends_subject
    assert cp.subject_suspended(world.engine, ag.id, [SUBJECT])
    assert cp.subject_suspended(world.engine, other.id, ["hs:" + "00" * 16, SUBJECT])
    assert not cp.subject_suspended(world.engine, ag.id, ["hs:" + "00" * 16])
    cp.transition(world.engine, world.owner, c.id, "investigating", now=world.now)
    assert cp.subject_suspended(world.engine, ag.id, [SUBJECT])
    cp.transition(world.engine, world.owner, c.id, "rejected", reasons=["the processing has a legal basis"],
                  now=world.now)
    assert not cp.subject_suspended(world.engine, ag.id, [SUBJECT])
