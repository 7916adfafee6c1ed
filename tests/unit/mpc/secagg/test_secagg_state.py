"""The server's state survives a round trip through plain JSON at every stage and holds only what it received;
a finished server keeps the sum, the survivors and the public keys, an aborted one no input or share."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mpc.secagg import (
    STAGE_PART,
    STATE_PARTS,
    ProtocolError,
    SecAggClient,
    SecAggServer,
    Stage,
    new_round,
    pending_in,
)

NAMES = ["a", "b", "c", "d", "e"]
L = 8


def _through_json(server: SecAggServer) -> SecAggServer:
    state = json.loads(json.dumps(server.to_state()))
    again = SecAggServer.from_state(server.config, state)
    assert again.to_state() == server.to_state()
    assert again.pending() == server.pending() == pending_in(server.config, server.stage, server.held())
    return again


def _vectors() -> dict[str, np.ndarray]:
    return {name: np.arange(L, dtype=np.uint32) * (i + 1) for i, name in enumerate(NAMES)}


def test_a_round_restored_after_every_message_gives_the_sum() -> None:
    config = new_round(NAMES, 3, L)
    clients = {name: SecAggClient(config, name) for name in NAMES}
    vectors = _vectors()
    server = SecAggServer(config)
    for name in NAMES:
        server.receive(clients[name].advertise_keys().to_json())
        server = _through_json(server)
    server.close_stage()
    roster = _through_json(server).key_roster()
    for name in NAMES:
        server.receive(clients[name].share_keys(roster).to_json())
        server = _through_json(server)
    server.close_stage()
    survivors = NAMES[:4]  # "e" drops before its masked input
    for name in survivors:
        server = _through_json(server)
        server.receive(clients[name].masked_input(server.forwarded_shares(name), vectors[name]).to_json())
    server.close_stage()
    request = _through_json(server).unmask_request()
    for name in survivors:
        server.receive(clients[name].unmask(request).to_json())
        server = _through_json(server)
    server.close_stage()
    server = _through_json(server)
    expected = sum((vectors[n].astype(np.uint64) for n in survivors), np.zeros(L, dtype=np.uint64)) % (1 << 32)
    assert server.stage is Stage.DONE and server.survivors == tuple(survivors)
    assert np.array_equal(server.result(), expected.astype(np.uint32))
    held = server.held()
    assert held["masked"] == held["revealed"] == held["envelopes"] == ()  # nothing that could unmask an input
    assert set(held["keys"]) == set(NAMES)


def test_an_entry_is_exactly_the_message_part_the_server_kept() -> None:
    config = new_round(NAMES, 3, L)
    server = SecAggServer(config)
    message = SecAggClient(config, "a").advertise_keys()
    server.receive(message)
    part = STAGE_PART[Stage.ADVERTISE_KEYS]
    assert part in STATE_PARTS
    assert server.entry(part, "a") == {"c_public": message.to_json()["c_public"],
                                       "s_public": message.to_json()["s_public"]}
    assert server.to_state(parts=False).keys() == {"format", "stage", "abort_reason", "result", "survivors"}


def test_an_aborted_round_keeps_no_input_or_share() -> None:
    config = new_round(NAMES, 3, L)
    clients = {name: SecAggClient(config, name) for name in NAMES}
    server = SecAggServer(config)
    for name in NAMES:
        server.receive(clients[name].advertise_keys())
    server.close_stage()
    roster = server.key_roster()
    for name in NAMES[:2]:
        server.receive(clients[name].share_keys(roster))
    server.close_stage()  # two of three: below the threshold
    state = _through_json(server).to_state()
    assert state["stage"] == "aborted" and "fewer than the threshold" in state["abort_reason"]
    assert state["parts"]["envelopes"] == state["parts"]["masked"] == state["parts"]["revealed"] == {}


@pytest.mark.parametrize("state", [{}, {"format": 99, "stage": "done"}, {"format": 1, "stage": "nowhere"},
                                   {"format": 1, "stage": "share_keys", "parts": {"keys": {"a": {"c_public": 1}}}}])
def test_a_malformed_state_is_refused(state: dict[str, object]) -> None:
    with pytest.raises(ProtocolError):
        SecAggServer.from_state(new_round(NAMES, 3, L), state)


def test_a_server_restored_from_names_alone_accepts_messages_but_never_guesses_a_value() -> None:
    """Entries given as ``None`` (held, value not given): the server still accepts messages and closes the stages
    whose checks need only who sent; the roster, forwarded shares and the sum refuse without their values."""
    config = new_round(NAMES, 3, L)
    clients = {name: SecAggClient(config, name) for name in NAMES}
    server = SecAggServer(config)
    for name in NAMES:
        server.receive(clients[name].advertise_keys())
    server.close_stage()
    roster = server.key_roster()
    for name in NAMES:
        server.receive(clients[name].share_keys(roster))
    server.close_stage()
    full = server.to_state()

    def names_only(*parts: str) -> SecAggServer:
        state = {**full, "parts": {p: ({s: None for s in v} if p in parts else v) for p, v in full["parts"].items()}}
        return SecAggServer.from_state(config, state)

    light = names_only("envelopes")
    assert light.pending() == server.pending()
    with pytest.raises(ProtocolError):
        light.forwarded_shares("a")
    with pytest.raises(ProtocolError):
        light.entry("envelopes", "a")
    vectors = _vectors()
    message = clients["a"].masked_input(server.forwarded_shares("a"), vectors["a"])
    light.receive(message)  # accepted from names alone, and its own entry is whole
    assert light.entry("masked", "a") == message.to_json()["vector"]
    with pytest.raises(ProtocolError):
        names_only("keys").key_roster()
    server.receive(message)
    for name in NAMES[1:]:
        server.receive(clients[name].masked_input(server.forwarded_shares(name), vectors[name]))
    server.close_stage()
    request = server.unmask_request()
    for name in NAMES:
        server.receive(clients[name].unmask(request))
    full = server.to_state()
    with pytest.raises(ProtocolError):
        names_only("masked").close_stage()  # the sum needs every masked input
    assert names_only("envelopes").close_stage() is None  # ... but not the envelopes
