"""The server refuses malformed, replayed, out-of-stage, wrong-round and unknown-participant messages."""

import base64

import numpy as np
import pytest

from mpc.errors import MpcError
from mpc.secagg import (
    AdvertiseKeys,
    MaskedInput,
    ProtocolError,
    SecAggClient,
    SecAggServer,
    ShareKeys,
    Stage,
    UnmaskShares,
    new_round,
)
from mpc.secagg.shamir import encode_value

NAMES = ["a", "b", "c", "d", "e"]
T = 3
L = 8


@pytest.fixture
def config():
    return new_round(NAMES, T, L)


@pytest.fixture
def parties(config):
    return SecAggServer(config), {name: SecAggClient(config, name) for name in NAMES}


def advertise(server, clients, names=NAMES):
    for name in names:
        server.receive(clients[name].advertise_keys().to_json())
    server.close_stage()


def share(server, clients, names=NAMES):
    roster = server.key_roster()
    for name in names:
        server.receive(clients[name].share_keys(roster).to_json())
    server.close_stage()


def mask(server, clients, names=NAMES):
    for name in names:
        vector = np.full(L, 3, dtype=np.uint32)
        server.receive(clients[name].masked_input(server.forwarded_shares(name), vector).to_json())
    server.close_stage()


def rejected(server, message):
    with pytest.raises(ProtocolError) as err:
        server.receive(message)
    assert isinstance(err.value, MpcError)
    assert err.value.code == "INVALID_REQUEST"
    return err.value


def valid_advert(config, sender="a"):
    return AdvertiseKeys(round_id=config.round_id, sender=sender, c_public=b"\x09" * 32, s_public=b"\x0a" * 32)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("sender"),
        lambda d: d.update(c_public="not base64!"),
        lambda d: d.update(c_public=base64.b64encode(b"short").decode()),
        lambda d: d.update(extra="field"),
        lambda d: d.update(kind="no_such_kind"),
        lambda d: d.update(round_id=7),
        lambda d: d.update(sender=""),
    ],
)
def test_malformed_messages_are_rejected(config, mutate):
    server = SecAggServer(config)
    data = valid_advert(config).to_json()
    mutate(data)
    rejected(server, data)
    assert server.pending() == frozenset(NAMES)


def test_non_object_is_rejected(config):
    rejected(SecAggServer(config), ["advertise_keys"])


def test_replayed_message_is_rejected(parties):
    server, clients = parties
    message = clients["a"].advertise_keys()
    server.receive(message.to_json())
    rejected(server, message.to_json())
    assert server.pending() == frozenset(NAMES) - {"a"}


def test_wrong_round_and_unknown_participant(config, parties):
    server, _ = parties
    other = valid_advert(config).model_copy(update={"round_id": "sa-other"})
    rejected(server, other)
    rejected(server, valid_advert(config, sender="mallory"))


def test_reused_public_key_is_rejected(config, parties):
    server, clients = parties
    first = clients["a"].advertise_keys()
    server.receive(first)
    copycat = AdvertiseKeys(round_id=config.round_id, sender="b", c_public=first.c_public, s_public=b"\x01" * 32)
    rejected(server, copycat)


def test_out_of_stage_messages_are_rejected(config, parties):
    server, clients = parties
    early = ShareKeys(round_id=config.round_id, sender="a", ciphertexts={})
    rejected(server, early)
    advertise(server, clients)
    assert server.stage is Stage.SHARE_KEYS
    rejected(server, valid_advert(config, sender="a"))  # advertise is over
    share(server, clients)
    mask(server, clients, NAMES[:4])
    late = MaskedInput(round_id=config.round_id, sender="e", vector=bytes(4 * L))
    rejected(server, late)  # masked-input stage closed without "e"
    assert server.survivors == ("a", "b", "c", "d")


def test_dropped_client_cannot_rejoin_later(config, parties):
    server, clients = parties
    advertise(server, clients, NAMES[:4])
    rejected(server, ShareKeys(round_id=config.round_id, sender="e", ciphertexts={}))


def test_share_keys_must_address_exactly_the_neighbours(config, parties):
    server, clients = parties
    advertise(server, clients)
    good = clients["a"].share_keys(server.key_roster())
    missing = dict(good.ciphertexts)
    missing.pop("b")
    rejected(server, good.model_copy(update={"ciphertexts": missing}))
    to_self = {**good.ciphertexts, "a": good.ciphertexts["b"]}
    rejected(server, good.model_copy(update={"ciphertexts": to_self}))
    short = {**good.ciphertexts, "b": good.ciphertexts["b"][:-1]}
    rejected(server, good.model_copy(update={"ciphertexts": short}))
    server.receive(good)


def test_masked_input_length_and_range(config):
    server = SecAggServer(new_round(NAMES, T, L, modulus_bits=8))
    clients = {name: SecAggClient(server.config, name) for name in NAMES}
    advertise(server, clients)
    share(server, clients)
    cfg = server.config
    rejected(server, MaskedInput(round_id=cfg.round_id, sender="a", vector=bytes(4 * L - 4)))
    too_big = np.full(L, 256, dtype="<u4").tobytes()
    rejected(server, MaskedInput(round_id=cfg.round_id, sender="a", vector=too_big))


def test_unmask_reveal_must_match_the_survivor_split(config, parties):
    server, clients = parties
    advertise(server, clients)
    share(server, clients)
    mask(server, clients, NAMES[:4])  # "e" dropped after sharing keys
    request = server.unmask_request()
    good = clients["a"].unmask(request)
    assert set(good.b_shares) == {"a", "b", "c", "d"} and set(good.s_shares) == {"e"}
    both = good.model_copy(update={"b_shares": {**good.b_shares, "e": good.s_shares["e"]}})
    rejected(server, both)
    rejected(server, good.model_copy(update={"s_shares": {}}))
    rejected(server, UnmaskShares(round_id=config.round_id, sender="e", b_shares={}, s_shares={}))
    not_field = {**good.b_shares, "a": b"\xff" * 33}
    rejected(server, good.model_copy(update={"b_shares": not_field}))
    server.receive(good)
    rejected(server, good)  # replay
    for name in ("b", "c"):
        server.receive(clients[name].unmask(request))
    server.close_stage()
    assert np.array_equal(server.result(), np.full(L, 12, dtype=np.uint32))
    rejected(server, clients["d"].unmask(request))  # round is over


def test_inconsistent_shares_abort_instead_of_a_wrong_sum(config, parties):
    server, clients = parties
    advertise(server, clients)
    share(server, clients)
    mask(server, clients, NAMES[:4])
    request = server.unmask_request()
    liar = clients["a"].unmask(request)
    forged = liar.model_copy(update={"s_shares": {"e": encode_value(12345)}})
    server.receive(forged)
    for name in ("b", "c"):
        server.receive(clients[name].unmask(request))
    server.close_stage()
    assert server.stage is Stage.ABORTED


def test_results_and_publications_only_in_their_stage(config, parties):
    server, clients = parties
    for call in (server.key_roster, server.unmask_request, server.result, lambda: server.forwarded_shares("a")):
        with pytest.raises(ProtocolError):
            call()
    advertise(server, clients, NAMES[:4])
    share(server, clients, NAMES[:4])
    with pytest.raises(ProtocolError):
        server.forwarded_shares("e")  # never shared keys
