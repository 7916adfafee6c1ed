"""Attacks on the HTTP layer of secure aggregation: spoofed senders, outsiders, out-of-stage and replayed
messages, oversized bodies, rounds opened or released outside an agreement, deadlines, restarts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gateway.context import open_context
from gateway.server import BackgroundServer
from gateway.services.rounds import max_message_bytes
from mpc.secagg import AdvertiseKeys, MaskedInput, SecAggClient, ShareKeys, Stage, UnmaskShares
from veilbox.client import ApiError, Client
from veilbox.secagg_client import round_config

HOLDERS = ("holder-a", "holder-b", "holder-c", "holder-d", "holder-e")


def refused(code: str, call: Any, *args: Any, **kw: Any) -> ApiError:
    with pytest.raises(ApiError) as e:
        call(*args, **kw)
    assert e.value.code == code, (e.value.code, e.value.message)
    return e.value


def spoofed(kind: str, round_id: str, victim: str, length: int) -> dict[str, Any]:
    """A well-formed message of ``kind`` that names ``victim`` as its sender."""
    if kind == "keys":
        return AdvertiseKeys(round_id=round_id, sender=victim, c_public=b"\1" * 32, s_public=b"\2" * 32).to_json()
    if kind == "shares":
        return ShareKeys(round_id=round_id, sender=victim, ciphertexts={}).to_json()
    if kind == "masked":
        return MaskedInput(round_id=round_id, sender=victim, vector=bytes(4 * length)).to_json()
    return UnmaskShares(round_id=round_id, sender=victim, b_shares={}, s_shares={}).to_json()


@pytest.mark.parametrize("kind", ["keys", "shares", "masked", "unmask"])
def test_a_holder_cannot_speak_for_another(world, kind: str) -> None:
    rnd = world.open()
    e = refused("POLICY_DENIED", world.holders["holder-a"].secagg_send, rnd["id"], kind,
                spoofed(kind, rnd["id"], "holder-b", 64))
    assert e.details == [{"reason": "secagg.sender_mismatch"}]
    st = world.operator.secagg_round(rnd["id"])
    assert "holder-b" in st["pending"] and st["waiting_for"] == 5  # nothing was accepted for anyone


def test_spoofing_does_not_stop_the_victim_or_the_round(world) -> None:
    rnd = world.open(threshold=5)
    refused("POLICY_DENIED", world.holders["holder-a"].secagg_send, rnd["id"], "keys",
            spoofed("keys", rnd["id"], "holder-b", 64))
    vectors = world.inputs(seed=3)
    run = world.run(rnd["id"], vectors, closer=False)
    assert run.errors == {}
    assert world.operator.secagg_result(rnd["id"], wait=10)["survivors"] == list(HOLDERS)


def test_outsiders_cannot_see_or_touch_a_round(world) -> None:
    rnd = world.open()
    rid = rnd["id"]
    s = world.stranger
    missing = refused("NOT_FOUND_OR_FORBIDDEN", s.secagg_round, "sa-" + "0" * 24)
    for call, args in [(s.secagg_round, (rid,)), (s.secagg_published, (rid, "keys")),
                       (s.secagg_published, (rid, "shares")), (s.secagg_published, (rid, "survivors")),
                       (s.secagg_result, (rid,)), (s.secagg_close, (rid,)),
                       (s.secagg_send, (rid, "keys", spoofed("keys", rid, "outsider-bank", 64)))]:
        e = refused("NOT_FOUND_OR_FORBIDDEN", call, *args)
        assert (e.message, e.details) == (missing.message, missing.details)  # no existence oracle
    assert s.secagg_rounds() == []
    assert [r["id"] for r in world.holders["holder-c"].secagg_rounds()] == [rid]


def test_roles_inside_the_round(world) -> None:
    rnd = world.open()
    rid = rnd["id"]
    # the opener is not a participant: it cannot send messages
    refused("POLICY_DENIED", world.operator.secagg_send, rid, "keys", spoofed("keys", rid, "risk-lab", 64))
    # participants cannot close stages or read the result
    refused("POLICY_DENIED", world.holders["holder-a"].secagg_close, rid)
    refused("POLICY_DENIED", world.holders["holder-a"].secagg_result, rid)
    # and only the opener sees who is pending
    assert "pending" not in world.holders["holder-a"].secagg_round(rid)


def test_out_of_stage_replayed_and_misrouted_messages_are_refused(world) -> None:
    rnd = world.open()
    rid = rnd["id"]
    a = world.holders["holder-a"]
    config = round_config(rnd)
    proto = SecAggClient(config, "holder-a")
    keys = proto.advertise_keys().to_json()
    # a message of a later stage, before its stage
    e = refused("INVALID_REQUEST", a.secagg_send, rid, "masked", spoofed("masked", rid, "holder-a", 64))
    assert "not accepted in stage advertise_keys" in e.message
    # the wrong kind for the endpoint
    refused("INVALID_REQUEST", a.secagg_send, rid, "keys", spoofed("shares", rid, "holder-a", 64))
    # malformed
    refused("INVALID_REQUEST", a.secagg_send, rid, "keys", {**keys, "c_public": "not base64!"})
    a.secagg_send(rid, "keys", keys)
    # a replay of an accepted message
    e = refused("INVALID_REQUEST", a.secagg_send, rid, "keys", keys)
    assert "already sent" in e.message
    # a message of this round posted to another round
    other = world.open()
    refused("INVALID_REQUEST", a.secagg_send, other["id"], "keys", keys)
    # after the stage closed, a late message is refused
    world.operator.secagg_close(other["id"])  # only 0 of 5 advertised: aborts
    late = SecAggClient(round_config(other), "holder-b").advertise_keys().to_json()
    refused("INVALID_REQUEST", world.holders["holder-b"].secagg_send, other["id"], "keys", late)


def test_bodies_larger_than_the_round_allows_are_refused_before_parsing(world) -> None:
    rnd = world.open()
    config = round_config(rnd)
    limit = max_message_bytes(config, "keys")
    msg = spoofed("keys", rnd["id"], "holder-a", 64)
    msg["padding"] = "x" * limit
    e = refused("INVALID_REQUEST", world.holders["holder-a"].secagg_send, rnd["id"], "keys", msg)
    assert "larger than this round allows" in e.message
    msg = spoofed("masked", rnd["id"], "holder-a", 64)
    msg["vector"] = "A" * (max_message_bytes(config, "masked") + 4)
    refused("INVALID_REQUEST", world.holders["holder-a"].secagg_send, rnd["id"], "masked", msg)


def test_who_may_open_a_round(world) -> None:
    p = world.parties
    ag = world.agreement_id
    refused("NOT_FOUND_OR_FORBIDDEN", p.bank.secagg_open, ag, list(HOLDERS), 3, 8)  # no party to it
    refused("POLICY_DENIED", p.owner.secagg_open, ag, list(HOLDERS), 3, 8)  # a party, but not the grantee
    no_train = p.agreement(job_kinds=["query"])
    e = refused("POLICY_DENIED", world.operator.secagg_open, no_train["id"], list(HOLDERS), 3, 8)
    assert {"reason": "job_kind.not_allowed", "message": "the agreement does not allow this kind of job"} in e.details
    bank_ag = p.agreement(grantee="icbc-wuxi")
    refused("POLICY_DENIED", p.bank.secagg_open, bank_ag["id"], list(HOLDERS), 3, 8)  # operators only
    refused("NOT_FOUND_OR_FORBIDDEN", world.operator.secagg_open, bank_ag["id"], list(HOLDERS), 3, 8)
    p.owner.suspend_agreement(ag)
    refused("AGREEMENT_INACTIVE", world.operator.secagg_open, ag, list(HOLDERS), 3, 8)
    p.owner.resume_agreement(ag)
    for other in ("admin", "city-data-regulator", "nobody", "outsider-bank"):
        e = refused("POLICY_DENIED", world.operator.secagg_open, ag, ["holder-a", "holder-b", other], 3, 8)
        assert e.details == [{"participant": other, "reason": "secagg.participant_not_allowed"}]
    refused("INVALID_REQUEST", world.operator.secagg_open, ag, list(HOLDERS), 3, 8, modulus_bits=40)
    refused("INVALID_REQUEST", world.operator.secagg_open, ag, ["holder-a", "holder-a", "holder-b", "holder-c"], 3, 8)
    refused("INVALID_REQUEST", world.operator.secagg_open, ag, list(HOLDERS), 3, 5_000_000)  # > body limit
    refused("INVALID_REQUEST", world.operator.secagg_open, ag, list(HOLDERS), 3, 8, stage_timeout_s=0.01)
    refused("INVALID_REQUEST", world.operator.secagg_open, ag, list(HOLDERS), 3, 8,
            task={"blob": "x" * (300 << 10)})


def test_open_rounds_are_capped(world) -> None:
    world.registry.max_open_per_opener = 2
    first = world.open()
    world.open()
    e = refused("QUOTA_EXCEEDED", world.open)
    assert e.details[0]["reason"] == "secagg.open_rounds_per_operator"
    world.operator.secagg_close(first["id"])  # nobody advertised: aborted, its slot is free again
    world.open()


def test_a_revoked_agreement_releases_nothing(world) -> None:
    rnd = world.open(threshold=3)
    run = world.run(rnd["id"], world.inputs(seed=4), closer=False)
    assert run.errors == {}
    world.parties.owner.revoke_agreement(world.agreement_id)
    refused("AGREEMENT_INACTIVE", world.operator.secagg_result, rnd["id"])
    entries = world.parties.regulator.audit(limit=1000)["entries"]
    results = [x for x in entries if x["action"] == "secagg.result"]
    assert results and all(x["decision"] == "deny" and x["output_digest"] is None for x in results)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_stage_deadlines_close_stages_and_abort_below_threshold(world) -> None:
    clock = FakeClock()
    world.registry.clock = clock
    rnd = world.open(threshold=3, stage_timeout_s=60)
    rid, config = rnd["id"], round_config(rnd)
    protos = {n: SecAggClient(config, n) for n in HOLDERS[:3]}
    for n, proto in protos.items():
        world.holders[n].secagg_send(rid, "keys", proto.advertise_keys().to_json())
    view = world.holders["holder-a"].secagg_published(rid, "keys")
    assert not view["ready"] and view["stage"] == "advertise_keys"
    clock.now += 61  # the deadline passes: the stage closes with the three who advertised
    view = world.holders["holder-a"].secagg_published(rid, "keys")
    assert view["ready"] and sorted(view["message"]["keys"]) == list(HOLDERS[:3])
    st = world.operator.secagg_round(rid)
    assert st["history"] == [{"stage": "advertise_keys", "by": "deadline", "received": 3, "next": "share_keys"}]
    refused("INVALID_REQUEST", world.holders["holder-d"].secagg_send, rid, "keys",
            SecAggClient(config, "holder-d").advertise_keys().to_json())  # too late
    from mpc.secagg import parse_server_message

    roster = parse_server_message(view["message"])
    world.holders["holder-a"].secagg_send(rid, "shares", protos["holder-a"].share_keys(roster).to_json())
    clock.now += 61  # only one of three shared keys: below the threshold, the round aborts
    st = world.holders["holder-b"].secagg_round(rid)
    assert st["stage"] == "aborted" and "fewer than the threshold" in st["abort_reason"]
    refused("INVALID_REQUEST", world.operator.secagg_result, rid)


def test_another_gateway_process_serves_an_open_round(world) -> None:
    """Rounds live in the store: a second gateway over the same home (another process, or this one restarted)
    serves the round, and it still answers NOT_FOUND_OR_FORBIDDEN to a principal outside it."""
    rnd = world.open()
    ctx = open_context(world.parties.service.settings)
    try:
        with BackgroundServer(ctx) as srv, Client(srv.url) as anon:
            holder = anon.with_token(world.holders["holder-a"]._http.headers["Authorization"].split()[1])
            stranger = anon.with_token(world.stranger._http.headers["Authorization"].split()[1])
            assert holder.secagg_round(rnd["id"])["stage"] == "advertise_keys"
            refused("NOT_FOUND_OR_FORBIDDEN", stranger.secagg_round, rnd["id"])
            holder.close()
            stranger.close()
    finally:
        ctx.close()
    assert world.holders["holder-a"].secagg_round(rnd["id"])["stage"] == "advertise_keys"


def test_the_audit_log_records_the_round_without_its_secrets(world) -> None:
    rnd = world.open(threshold=3)
    vectors = world.inputs(seed=5)
    run = world.run(rnd["id"], vectors, closer=False)
    assert run.errors == {}
    result = world.operator.secagg_result(rnd["id"])
    entries = world.parties.regulator.audit(limit=1000)["entries"]
    mine = [x for x in entries if x["action"].startswith("secagg.")]
    assert {x["action"] for x in mine} >= {"secagg.open", "secagg.keys.send", "secagg.keys.roster",
                                           "secagg.shares.send", "secagg.shares.forwarded", "secagg.masked.send",
                                           "secagg.survivors", "secagg.unmask.send", "secagg.result"}
    assert all(x["agreement_id"] == world.agreement_id for x in mine)
    released = [x for x in mine if x["output_digest"]]
    assert [x["action"] for x in released] == ["secagg.result"]
    assert released[0]["output_digest"] == result["output_digest"]
    for x in mine:  # no key, envelope, masked vector or share in the log
        assert len(str(x["details"])) < 2000 and result["sum"] not in str(x["details"])
    owner_view = world.parties.owner.audit(limit=1000)["entries"]
    assert any(x["action"] == "secagg.result" for x in owner_view)  # the data owner sees the round
    assert np.array_equal(np.frombuffer(__import__("base64").b64decode(result["sum"]), "<u4"),
                          world.expected(vectors, HOLDERS))
    assert Stage.DONE.value == result["stage"]
