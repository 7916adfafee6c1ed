"""The client of a round, as a stage state machine.

``advertise_keys() → share_keys(roster) → masked_input(forwarded, vector) → unmask(request)``; each call
is allowed once, in that order, and checks the server's view before answering (round id, its own keys in
the roster, distinct keys, enough peers, consistent survivors). Keys, the self-mask seed and the shares it
holds for others never leave the object except as the protocol prescribes.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mpc.secagg.channel import open_shares, seal_shares
from mpc.secagg.config import RoundConfig, Stage
from mpc.secagg.errors import CiphertextInvalid, ProtocolError, RoundAborted
from mpc.secagg.keys import KeyPair, agree, channel_key, mask_seed
from mpc.secagg.messages import (
    AdvertiseKeys,
    ForwardedShares,
    KeyRoster,
    MaskedInput,
    PublicKeys,
    ShareKeys,
    UnmaskRequest,
    UnmaskShares,
)
from mpc.secagg.prg import expand, random_seed
from mpc.secagg.shamir import encode_value, split_bytes


class SecAggClient:
    """One participant's side of a round."""

    def __init__(self, config: RoundConfig, name: str) -> None:
        if name not in config.point:
            raise ProtocolError("not a participant of this round")
        self.config = config
        self.name = name
        self._graph = config.graph
        self._stage = Stage.ADVERTISE_KEYS
        self._c = KeyPair.generate()
        self._s = KeyPair.generate()
        self._b_seed = random_seed()
        self._roster: dict[str, PublicKeys] = {}
        self._channel: dict[str, bytes] = {}
        self._held: dict[str, tuple[int, int]] = {}  # peer (and self) → (s-share value, b-share value)

    @property
    def stage(self) -> Stage:
        """Where this client is: the stage whose message it produces next, or done/aborted."""
        return self._stage

    def advertise_keys(self) -> AdvertiseKeys:
        """Stage 0: publish the two fresh public keys."""
        self._enter(Stage.ADVERTISE_KEYS)
        self._stage = Stage.SHARE_KEYS
        return AdvertiseKeys(
            round_id=self.config.round_id, sender=self.name, c_public=self._c.public, s_public=self._s.public
        )

    def share_keys(self, roster: KeyRoster) -> ShareKeys:
        """Stage 1: Shamir-share ``s_sk`` and ``b`` inside the neighbourhood, one envelope per neighbour."""
        self._enter(Stage.SHARE_KEYS)
        self._check_round(roster.round_id)
        config = self.config
        if any(name not in config.point for name in roster.keys):
            raise ProtocolError("roster names a non-participant")
        own = roster.keys.get(self.name)
        if own is None or own.c_public != self._c.public or own.s_public != self._s.public:
            raise ProtocolError("roster does not carry this client's keys")
        published = [key for keys in roster.keys.values() for key in (keys.c_public, keys.s_public)]
        if len(set(published)) != len(published):
            raise ProtocolError("roster repeats a public key")
        if len(roster.keys) < config.threshold:
            raise RoundAborted("fewer than the threshold advertised keys")
        peers = sorted(self._graph.neighbours(self.name) & roster.keys.keys(), key=config.point.__getitem__)
        if len(peers) + 1 < self._graph.threshold:
            raise RoundAborted("too few neighbours advertised keys")
        self._roster = {name: roster.keys[name] for name in [*peers, self.name]}
        holders = [self.name, *peers]
        points = [config.point[name] for name in holders]
        s_shares = split_bytes(self._s.private_bytes(), self._graph.threshold, points)
        b_shares = split_bytes(self._b_seed, self._graph.threshold, points)
        self._held[self.name] = (s_shares[0].y, b_shares[0].y)
        ciphertexts = {}
        for peer, s_share, b_share in zip(peers, s_shares[1:], b_shares[1:], strict=True):
            ciphertexts[peer] = seal_shares(
                self._channel_key(peer),
                s_share.y,
                b_share.y,
                round_id=config.round_id,
                sender=self.name,
                recipient=peer,
                stage=Stage.SHARE_KEYS.value,
            )
        self._stage = Stage.MASKED_INPUT
        return ShareKeys(round_id=config.round_id, sender=self.name, ciphertexts=ciphertexts)

    def masked_input(self, forwarded: ForwardedShares, vector: ArrayLike) -> MaskedInput:
        """Stage 2: open the neighbours' envelopes (U2), then send ``x + PRG(b) + Σ ±PRG(s_uv)``."""
        self._enter(Stage.MASKED_INPUT)
        self._check_round(forwarded.round_id)
        config = self.config
        if forwarded.recipient != self.name:
            raise ProtocolError("shares addressed to another client")
        x = _as_input(vector, config.vector_length, config.modulus_bits)
        senders = set(forwarded.ciphertexts)
        if self.name in senders or not senders <= self._roster.keys():
            raise ProtocolError("shares from a client outside this neighbourhood's roster")
        if len(senders) + 1 < self._graph.threshold:
            raise RoundAborted("too few neighbours shared keys")
        for sender in sorted(senders, key=config.point.__getitem__):
            try:
                self._held[sender] = open_shares(
                    self._channel_key(sender),
                    forwarded.ciphertexts[sender],
                    round_id=config.round_id,
                    sender=sender,
                    recipient=self.name,
                    stage=Stage.SHARE_KEYS.value,
                )
            except CiphertextInvalid:
                self._stage = Stage.ABORTED
                raise
        me = config.point[self.name]
        y = x  # a fresh copy of the caller's vector
        np.add(y, expand(self._b_seed, config.vector_length, config.modulus_bits), out=y)
        for peer in senders:
            try:
                shared = agree(self._s.private, self._roster[peer].s_public)
            except ValueError:
                raise ProtocolError("peer public key is unusable") from None
            mask = expand(
                mask_seed(shared, config.round_id, self.name, peer), config.vector_length, config.modulus_bits
            )
            if me < config.point[peer]:
                np.add(y, mask, out=y)
            else:
                np.subtract(y, mask, out=y)
        if config.modulus_bits < 32:
            np.bitwise_and(y, np.uint32((1 << config.modulus_bits) - 1), out=y)
        self._stage = Stage.UNMASK
        return MaskedInput(round_id=config.round_id, sender=self.name, vector=y.astype("<u4", copy=False).tobytes())

    def unmask(self, request: UnmaskRequest) -> UnmaskShares:
        """Stage 3: reveal ``b`` shares of survivors and ``s_sk`` shares of dropped neighbours, never both."""
        self._enter(Stage.UNMASK)
        self._check_round(request.round_id)
        config = self.config
        survivors = set(request.survivors)
        if len(survivors) != len(request.survivors) or any(name not in config.point for name in survivors):
            raise ProtocolError("survivor list is malformed")
        if self.name not in survivors:
            raise ProtocolError("survivor list omits this client")
        local_survivors = survivors & self._graph.neighbours(self.name)
        if not local_survivors <= self._held.keys():
            raise ProtocolError("survivor list names a neighbour that never shared keys")
        if len(survivors) < config.threshold:
            raise RoundAborted("fewer than the threshold survivors")
        if self._graph.short_neighbourhoods(survivors, [self.name]) or not self._graph.connected(survivors):
            raise RoundAborted("survivors are too sparse to reveal only their sum")
        b_shares = {}
        s_shares = {}
        for owner, (s_value, b_value) in self._held.items():
            if owner in survivors:
                b_shares[owner] = encode_value(b_value)
            else:
                s_shares[owner] = encode_value(s_value)
        self._stage = Stage.DONE
        return UnmaskShares(round_id=config.round_id, sender=self.name, b_shares=b_shares, s_shares=s_shares)

    def _enter(self, stage: Stage) -> None:
        if self._stage is not stage:
            raise ProtocolError(f"client is in stage {self._stage.value}, not {stage.value}")

    def _check_round(self, round_id: str) -> None:
        if round_id != self.config.round_id:
            raise ProtocolError("message belongs to another round")

    def _channel_key(self, peer: str) -> bytes:
        key = self._channel.get(peer)
        if key is None:
            try:
                shared = agree(self._c.private, self._roster[peer].c_public)
            except ValueError:
                raise ProtocolError("peer public key is unusable") from None
            key = self._channel[peer] = channel_key(shared, self.config.round_id, self.name, peer)
        return key


def _as_input(vector: ArrayLike, length: int, modulus_bits: int) -> NDArray[np.uint32]:
    """The client's input as uint32 words in ``[0, 2^m)``; `ProtocolError` otherwise."""
    array = np.asarray(vector)
    if array.shape != (length,) or array.dtype.kind not in "iu":
        raise ProtocolError("input must be an integer vector of the round's length")
    if array.size and (int(array.min()) < 0 or int(array.max()) >= 1 << modulus_bits):
        raise ProtocolError("input values must lie in [0, 2**modulus_bits)")
    return array.astype(np.uint32)
