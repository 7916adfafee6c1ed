"""The client checks the server's view before it answers, and answers each stage once."""

import numpy as np
import pytest

from mpc.secagg import (
    CiphertextInvalid,
    KeyRoster,
    ProtocolError,
    PublicKeys,
    RoundAborted,
    SecAggClient,
    Stage,
    UnmaskRequest,
    new_round,
)

NAMES = ["a", "b", "c", "d", "e"]
L = 4


@pytest.fixture
def round_to_masked(round_at_masking):
    return round_at_masking(NAMES, 3, L)


def test_stages_run_once_and_in_order():
    config = new_round(NAMES, 3, L)
    client = SecAggClient(config, "a")
    with pytest.raises(ProtocolError):
        client.unmask(UnmaskRequest(round_id=config.round_id, survivors=tuple(NAMES)))
    client.advertise_keys()
    with pytest.raises(ProtocolError) as err:
        client.advertise_keys()
    assert err.value.code == "INVALID_REQUEST"
    assert client.stage is Stage.SHARE_KEYS


def test_non_participant_cannot_join():
    with pytest.raises(ProtocolError):
        SecAggClient(new_round(NAMES, 3, L), "mallory")


def test_roster_checks():
    config = new_round(NAMES, 3, L)
    clients = {name: SecAggClient(config, name) for name in NAMES}
    adverts = {name: c.advertise_keys() for name, c in clients.items()}
    keys = {n: PublicKeys(c_public=m.c_public, s_public=m.s_public) for n, m in adverts.items()}

    def roster(**changes):
        return KeyRoster(round_id=config.round_id, keys={**keys, **changes})

    with pytest.raises(ProtocolError):  # own keys swapped by the server
        clients["a"].share_keys(roster(a=keys["b"]))
    with pytest.raises(ProtocolError):  # a key shown twice
        clients["a"].share_keys(roster(c=PublicKeys(c_public=keys["b"].c_public, s_public=keys["c"].s_public)))
    with pytest.raises(ProtocolError):  # a stranger
        clients["a"].share_keys(roster(mallory=PublicKeys(c_public=b"\x01" * 32, s_public=b"\x02" * 32)))
    with pytest.raises(ProtocolError):
        clients["a"].share_keys(KeyRoster(round_id="sa-other", keys=keys))
    few = {n: keys[n] for n in ("a", "b")}
    with pytest.raises(RoundAborted):
        clients["a"].share_keys(KeyRoster(round_id=config.round_id, keys=few))
    assert clients["b"].share_keys(roster()).ciphertexts.keys() == {"a", "c", "d", "e"}


def test_tampered_envelope_is_detected(round_to_masked):
    _config, server, clients = round_to_masked
    forwarded = server.forwarded_shares("a")
    sealed = bytearray(forwarded.ciphertexts["b"])
    sealed[20] ^= 0x01
    tampered = forwarded.model_copy(update={"ciphertexts": {**forwarded.ciphertexts, "b": bytes(sealed)}})
    with pytest.raises(CiphertextInvalid) as err:
        clients["a"].masked_input(tampered, np.zeros(L, dtype=np.uint32))
    assert err.value.code == "CIPHERTEXT_INVALID"
    assert clients["a"].stage is Stage.ABORTED


def test_swapped_envelopes_are_detected(round_to_masked):
    """An envelope from b presented as coming from c fails: the sender is bound in the associated data."""
    _config, server, clients = round_to_masked
    forwarded = server.forwarded_shares("a")
    swapped = {**forwarded.ciphertexts, "b": forwarded.ciphertexts["c"], "c": forwarded.ciphertexts["b"]}
    with pytest.raises(CiphertextInvalid):
        clients["a"].masked_input(forwarded.model_copy(update={"ciphertexts": swapped}), np.zeros(L, np.uint32))


def test_shares_for_someone_else_and_bad_inputs(round_to_masked):
    _config, server, clients = round_to_masked
    with pytest.raises(ProtocolError):
        clients["a"].masked_input(server.forwarded_shares("b"), np.zeros(L, np.uint32))
    forwarded = server.forwarded_shares("a")
    for bad in (np.zeros(L + 1, np.uint32), np.full(L, -1), np.zeros(L, np.float64), np.full(L, 2**32)):
        with pytest.raises(ProtocolError):
            clients["a"].masked_input(forwarded, bad)


def test_unmask_checks_the_survivor_list(round_to_masked):
    config, server, clients = round_to_masked
    for name, client in clients.items():
        client.masked_input(server.forwarded_shares(name), np.zeros(L, np.uint32))

    def request(*survivors):
        return UnmaskRequest(round_id=config.round_id, survivors=survivors)

    with pytest.raises(ProtocolError):  # omits the client itself
        clients["a"].unmask(request("b", "c", "d"))
    with pytest.raises(ProtocolError):  # duplicates
        clients["a"].unmask(request("a", "a", "b", "c"))
    with pytest.raises(RoundAborted):  # fewer than t: refuse to reveal anything
        clients["a"].unmask(request("a", "b"))
    reveal = clients["a"].unmask(request("a", "b", "c"))
    assert set(reveal.b_shares) == {"a", "b", "c"} and set(reveal.s_shares) == {"d", "e"}
    with pytest.raises(ProtocolError):  # a second, different survivor list is never answered
        clients["a"].unmask(request("a", "b", "c", "d", "e"))
