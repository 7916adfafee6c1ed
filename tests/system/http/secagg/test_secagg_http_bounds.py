"""A secure-aggregation round cannot be aimed at one holder: the opener is never a participant, participants are
parties to the agreement, at least three of them with a threshold of at least three, disabled principals cannot
join, and naming principals (in a round or an agreement) never tells which names exist. Over real HTTP; every
refusal carries its documented code and is audited."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway import _tables as gt
from veilbox.client import ApiError

HOLDERS = ("holder-a", "holder-b", "holder-c", "holder-d", "holder-e")


def refusal(call: Any, *args: Any, **kw: Any) -> ApiError:
    with pytest.raises(ApiError) as e:
        call(*args, **kw)
    return e.value


def disable(world: Any, name: str) -> None:
    with world.parties.service.ctx.engine.begin() as conn:
        conn.execute(gt.principals.update().where(gt.principals.c.name == name).values(disabled=True))


def open_denials(world: Any) -> list[dict[str, Any]]:
    entries = world.parties.regulator.audit(limit=1000, action="secagg.open")["entries"]
    return [e for e in entries if e["decision"] == "deny"]


def test_the_opener_cannot_be_a_participant(world) -> None:
    e = refusal(world.operator.secagg_open, world.agreement_id, ["holder-a", "holder-b", "risk-lab"], 3, 8)
    assert (e.status, e.code) == (403, "POLICY_DENIED")
    assert e.details == [{"reason": "secagg.opener_is_participant"}]
    # nor can an agreement name its grantee as a holder
    e = refusal(world.parties.agreement, holders=["holder-a", "risk-lab"], accept=False)
    assert e.code == "INVALID_REQUEST" and "grantee" in str(e.details)
    denied = open_denials(world)
    assert [json.loads(x["details"])["reasons"] for x in denied] == [["secagg.opener_is_participant"]]
    assert denied[0]["code"] == "POLICY_DENIED" and denied[0]["actor"] == "risk-lab"


def test_participants_must_be_parties_to_the_agreement(world) -> None:
    # outsider-bank is a bank principal, but the agreement does not name it
    e = refusal(world.operator.secagg_open, world.agreement_id, ["holder-a", "holder-b", "outsider-bank"], 3, 8)
    assert (e.status, e.code, e.details) == (
        403, "POLICY_DENIED", [{"participant": "outsider-bank", "reason": "secagg.participant_not_allowed"}])
    # under an agreement that names no holders only its owner is a party: one party is not a round
    bare = world.parties.agreement()
    e = refusal(world.operator.secagg_open, bare["id"], list(HOLDERS[:3]), 3, 8)
    assert {d["participant"] for d in e.details} == set(HOLDERS[:3])
    # the agreement's owner is a party and may contribute
    rnd = world.operator.secagg_open(world.agreement_id, ["holder-a", "holder-b", "city-tax-bureau"], 3, 8)
    assert rnd["config"]["participants"] == ["holder-a", "holder-b", "city-tax-bureau"]
    denied = open_denials(world)
    assert len(denied) == 2 and all(x["code"] == "POLICY_DENIED" for x in denied)
    details = json.loads(denied[0]["details"])
    assert (details["reasons"], details["refused"]) == (["secagg.participant_not_allowed"], ["outsider-bank"])


@pytest.mark.parametrize("participants, threshold, reasons", [
    (["holder-a", "holder-b"], 2, ["secagg.too_few_participants", "secagg.threshold_too_low"]),
    (["holder-a", "holder-b"], 3, ["secagg.too_few_participants"]),
    (["holder-a", "holder-a", "holder-b"], 3, ["secagg.too_few_participants"]),  # one name counts once
    (["holder-a", "holder-b", "holder-c"], 2, ["secagg.threshold_too_low"]),  # a sum of two could be released
    (["holder-a", "holder-b", "holder-c", "holder-d"], 2, ["secagg.threshold_too_low"]),
])
def test_a_round_needs_three_participants_and_a_threshold_of_three(world, participants, threshold, reasons) -> None:
    e = refusal(world.operator.secagg_open, world.agreement_id, participants, threshold, 8)
    assert (e.status, e.code) == (403, "POLICY_DENIED")
    assert [d["reason"] for d in e.details] == reasons
    assert world.operator.secagg_rounds() == []
    denied = open_denials(world)
    assert len(denied) == 1 and json.loads(denied[0]["details"])["reasons"] == sorted(reasons)


def test_unknown_and_not_allowed_names_get_identical_errors(world) -> None:
    p = world.parties
    p.service.principal("sleeping-bank", "bank")
    disable(world, "sleeping-bank")
    # The owner names, as holders, a name that exists nowhere, a disabled bank, a regulator and the admin:
    # the proposal does not look names up, so it cannot tell them apart (and it succeeds for each).
    named = ["ghost-bank", "sleeping-bank", "city-data-regulator", "admin"]
    ag = p.agreement(holders=[*HOLDERS[:2], *named])
    for holders in (["ghost-bank"], ["holder-a"]):
        assert p.agreement(holders=holders, accept=False)["holders"] == holders

    def attempt(name: str) -> tuple[int, str, str, list[dict[str, Any]]]:
        e = refusal(world.operator.secagg_open, ag["id"], [*HOLDERS[:2], name], 3, 8)
        return e.status, e.code, e.message, [{**d, "participant": "X"} for d in e.details]

    answers = {name: attempt(name) for name in [*named, "outsider-bank", "nobody-at-all"]}
    assert len(set(map(json.dumps, answers.values()))) == 1, answers
    assert answers["ghost-bank"][1] == "POLICY_DENIED"
    assert all(x["code"] == "POLICY_DENIED" for x in open_denials(world))

    # The grantee of a proposal: one answer for unknown, disabled and wrong-role names.
    p.service.principal("sleeping-lab", "operator")
    disable(world, "sleeping-lab")
    grantees = {}
    for grantee in ("ghost-lab", "sleeping-lab", "city-data-regulator", "city-tax-bureau"):
        e = refusal(p.owner.propose_agreement, _doc(grantee))
        grantees[grantee] = (e.status, e.code, e.message, e.details)
    assert len(set(map(json.dumps, grantees.values()))) == 1, grantees
    assert grantees["ghost-lab"][1] == "INVALID_REQUEST"


def _doc(grantee: str) -> dict[str, Any]:
    return {"title": "t", "grantee": grantee, "datasets": ["tax_income"], "columns": {"tax_income": ["age"]},
            "purposes": ["credit_risk"], "job_kinds": ["train"], "valid_from": "2026-01-01T00:00:00Z",
            "valid_until": "2030-01-01T00:00:00Z", "budget": {"epsilon": 1}}


def test_disabled_principals_cannot_join(world) -> None:
    rnd = world.open(threshold=3)
    disable(world, "holder-e")
    vectors = world.inputs(seed=9)
    run = world.run(rnd["id"], vectors, absent=("holder-e",))
    assert run.errors == {}
    e = refusal(world.holders["holder-e"].secagg_round, rnd["id"])
    assert (e.status, e.code) == (401, "UNAUTHENTICATED")
    from veilbox.secagg_client import join_round

    e = refusal(join_round, world.holders["holder-e"], rnd["id"], vectors["holder-e"], timeout_s=60)
    assert e.code == "UNAUTHENTICATED"
    result = world.operator.secagg_result(rnd["id"], wait=10)
    assert result["survivors"] == list(HOLDERS[:4])
    entries = world.parties.regulator.audit(limit=1000, decision="deny")["entries"]
    assert any(x["code"] == "UNAUTHENTICATED" and x["action"] == "secagg.show" for x in entries)
    # and a disabled principal cannot be named in a new round: the answer a name that does not exist gets
    unknown = refusal(world.operator.secagg_open, world.agreement_id, ["holder-a", "holder-b", "nobody"], 3, 8)
    disabled = refusal(world.operator.secagg_open, world.agreement_id, ["holder-a", "holder-b", "holder-e"], 3, 8)
    assert (disabled.code, disabled.message) == (unknown.code, unknown.message) == (
        "POLICY_DENIED", unknown.message)
    assert disabled.details == [{"participant": "holder-e", "reason": "secagg.participant_not_allowed"}]
    assert unknown.details == [{"participant": "nobody", "reason": "secagg.participant_not_allowed"}]


@pytest.mark.parametrize("override", [
    {"modulus_bits": True}, {"vector_length": True}, {"threshold": "3"}, {"threshold": 3.0},
    {"stage_timeout_s": True}, {"stage_timeout_s": "60"},
])
def test_round_numbers_are_numbers(world, override) -> None:
    """A boolean or a string is never read as a round's threshold, length, modulus or deadline."""
    body = {"agreement_id": world.agreement_id, "participants": list(HOLDERS[:3]), "threshold": 3,
            "vector_length": 4, **override}
    e = refusal(world.operator.request, "POST", "/v1/secagg/rounds", json=body)
    assert (e.status, e.code) == (422, "INVALID_REQUEST")
    assert world.operator.secagg_rounds() == []
