"""The server of a round, as a stage state machine.

Feed client messages to `receive` (a message object or its JSON dict); call `close_stage` when a stage's
deadline passes or `pending()` is empty. Between stages the server publishes `key_roster`,
`forwarded_shares(recipient)` and `unmask_request`; after the last stage `result()` returns the sum of the
survivors' inputs and nothing else. Any stage that ends with fewer than the threshold (or, on a sparse
graph, a neighbourhood below its local threshold, or survivors that are not connected) aborts the round
before anything more is requested from clients; an aborted server drops every masked input and share it
held.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mpc.secagg.channel import CIPHERTEXT_BYTES
from mpc.secagg.config import RoundConfig, Stage
from mpc.secagg.errors import ProtocolError, RoundAborted
from mpc.secagg.keys import KeyPair, agree, mask_seed
from mpc.secagg.messages import (
    AdvertiseKeys,
    ClientMessage,
    ForwardedShares,
    KeyRoster,
    MaskedInput,
    PublicKeys,
    ShareKeys,
    UnmaskRequest,
    UnmaskShares,
    parse_client_message,
)
from mpc.secagg.prg import expand
from mpc.secagg.shamir import Share, decode_value, reconstruct_bytes

_ACCEPTS: dict[Stage, type[ClientMessage]] = {
    Stage.ADVERTISE_KEYS: AdvertiseKeys,
    Stage.SHARE_KEYS: ShareKeys,
    Stage.MASKED_INPUT: MaskedInput,
    Stage.UNMASK: UnmaskShares,
}


class SecAggServer:
    """The aggregator's side of a round (honest-but-curious: follows the protocol, keeps what it sees)."""

    def __init__(self, config: RoundConfig) -> None:
        self.config = config
        self._graph = config.graph
        self._stage = Stage.ADVERTISE_KEYS
        self._abort_reason: str | None = None
        self._keys: dict[str, PublicKeys] = {}  # U1 once advertise closes
        self._envelopes: dict[str, Mapping[str, bytes]] = {}  # sender → recipient → envelope; U2
        self._masked: dict[str, NDArray[np.uint32]] = {}  # U3
        self._revealed: dict[str, UnmaskShares] = {}  # U4
        self._result: NDArray[np.uint32] | None = None

    @property
    def stage(self) -> Stage:
        """Where the round is: the stage whose messages the server accepts now, or done/aborted."""
        return self._stage

    @property
    def survivors(self) -> tuple[str, ...]:
        """U3: the clients whose masked inputs are summed (empty before the masked-input stage closes)."""
        if self._stage in (Stage.UNMASK, Stage.DONE):
            return self._ordered(self._masked)
        return ()

    def expected(self) -> frozenset[str]:
        """Who may send a message in the current stage."""
        cohorts: dict[Stage, Collection[str]] = {
            Stage.ADVERTISE_KEYS: self.config.participants,
            Stage.SHARE_KEYS: self._keys,
            Stage.MASKED_INPUT: self._envelopes,
            Stage.UNMASK: self._masked,
        }
        return frozenset(cohorts.get(self._stage, ()))

    def pending(self) -> frozenset[str]:
        """Who may still send in the current stage."""
        received: dict[Stage, Collection[str]] = {
            Stage.ADVERTISE_KEYS: self._keys,
            Stage.SHARE_KEYS: self._envelopes,
            Stage.MASKED_INPUT: self._masked,
            Stage.UNMASK: self._revealed,
        }
        return self.expected() - frozenset(received.get(self._stage, ()))

    def receive(self, message: ClientMessage | Mapping[str, Any]) -> None:
        """Accept one client message; `ProtocolError` (INVALID_REQUEST) for anything out of protocol."""
        if not isinstance(message, AdvertiseKeys | ShareKeys | MaskedInput | UnmaskShares):
            message = parse_client_message(message)
        if self._stage in (Stage.DONE, Stage.ABORTED):
            raise ProtocolError("round is over")
        accepted = _ACCEPTS[self._stage]
        if not isinstance(message, accepted):
            raise ProtocolError(f"{message.kind} is not accepted in stage {self._stage.value}")
        if message.round_id != self.config.round_id:
            raise ProtocolError("message belongs to another round")
        sender = message.sender
        if sender not in self.config.point:
            raise ProtocolError("sender is not a participant of this round")
        if sender not in self.expected():
            raise ProtocolError("sender dropped out at an earlier stage")
        if sender not in self.pending():
            raise ProtocolError("sender already sent this stage's message")
        if isinstance(message, AdvertiseKeys):
            self._accept_keys(message)
        elif isinstance(message, ShareKeys):
            self._accept_envelopes(message)
        elif isinstance(message, MaskedInput):
            self._accept_masked(message)
        else:
            self._accept_reveal(message)

    def close_stage(self) -> None:
        """End the current stage with whoever has sent; abort if too few did."""
        stage = self._stage
        if stage is Stage.ADVERTISE_KEYS:
            if self._has_quorum(self._keys, "advertised keys"):
                self._stage = Stage.SHARE_KEYS
        elif stage is Stage.SHARE_KEYS:
            if self._has_quorum(self._envelopes, "shared keys"):
                self._stage = Stage.MASKED_INPUT
        elif stage is Stage.MASKED_INPUT:
            dropped = self._envelopes.keys() - self._masked.keys()
            if not self._has_quorum(self._masked, "sent masked inputs"):
                return
            if self._graph.short_neighbourhoods(self._masked, dropped):
                self._abort("a dropped client has too few surviving neighbours to cancel its masks")
            elif not self._graph.connected(self._masked):
                self._abort("survivors are not connected; the server would learn partial sums")
            else:
                self._stage = Stage.UNMASK
        elif stage is Stage.UNMASK:
            self._unmask()
        else:
            raise ProtocolError("round is over")

    def abort(self, reason: str) -> None:
        """End the round without a result (for example on a deadline the caller enforces)."""
        if self._stage is not Stage.DONE:
            self._abort(reason)

    def key_roster(self) -> KeyRoster:
        """The public keys of U1 (available once the advertise stage has closed)."""
        self._require_after(Stage.ADVERTISE_KEYS)
        return KeyRoster(round_id=self.config.round_id, keys=dict(self._keys))

    def forwarded_shares(self, recipient: str) -> ForwardedShares:
        """The envelopes addressed to ``recipient`` by the clients of U2."""
        if self._stage is not Stage.MASKED_INPUT:
            raise ProtocolError(f"shares are forwarded in stage masked_input, not {self._stage.value}")
        if recipient not in self._envelopes:
            raise ProtocolError("recipient did not share keys")
        ciphertexts = {
            sender: envelopes[recipient] for sender, envelopes in self._envelopes.items() if recipient in envelopes
        }
        return ForwardedShares(round_id=self.config.round_id, recipient=recipient, ciphertexts=ciphertexts)

    def unmask_request(self) -> UnmaskRequest:
        """The survivor list U3 sent to the clients of U3."""
        if self._stage is not Stage.UNMASK:
            raise ProtocolError(f"unmasking is requested in stage unmask, not {self._stage.value}")
        return UnmaskRequest(round_id=self.config.round_id, survivors=self.survivors)

    def result(self) -> NDArray[np.uint32]:
        """The sum of the survivors' inputs modulo ``2**modulus_bits``; `RoundAborted` if it aborted."""
        if self._stage is Stage.ABORTED:
            raise RoundAborted(self._abort_reason or "round aborted")
        if self._result is None:
            raise ProtocolError(f"no result in stage {self._stage.value}")
        return self._result.copy()

    # -- stage handlers ---------------------------------------------------------------------------------

    def _accept_keys(self, message: AdvertiseKeys) -> None:
        new = {message.c_public, message.s_public}
        taken = {key for keys in self._keys.values() for key in (keys.c_public, keys.s_public)}
        if len(new) != 2 or new & taken:
            raise ProtocolError("public keys must be distinct from every other advertised key")
        self._keys[message.sender] = PublicKeys(c_public=message.c_public, s_public=message.s_public)

    def _accept_envelopes(self, message: ShareKeys) -> None:
        wanted = self._graph.neighbours(message.sender) & self._keys.keys()
        if set(message.ciphertexts) != wanted:
            raise ProtocolError("shares must go to exactly the sender's neighbours that advertised keys")
        if any(len(envelope) != CIPHERTEXT_BYTES for envelope in message.ciphertexts.values()):
            raise ProtocolError("encrypted share has the wrong length")
        self._envelopes[message.sender] = dict(message.ciphertexts)

    def _accept_masked(self, message: MaskedInput) -> None:
        config = self.config
        if len(message.vector) != 4 * config.vector_length:
            raise ProtocolError("masked input has the wrong length")
        vector = message.array()
        if config.modulus_bits < 32 and int(vector.max()) >= 1 << config.modulus_bits:
            raise ProtocolError("masked input exceeds the modulus")
        self._masked[message.sender] = vector

    def _accept_reveal(self, message: UnmaskShares) -> None:
        held = self._graph.closed_neighbourhood(message.sender)
        want_b = held & self._masked.keys()
        want_s = (held & self._envelopes.keys()) - self._masked.keys()
        if set(message.b_shares) != want_b or set(message.s_shares) != want_s:
            raise ProtocolError("reveal must cover exactly the survivors' b and the dropped clients' s shares")
        try:
            for value in (*message.b_shares.values(), *message.s_shares.values()):
                decode_value(value)
        except ValueError:
            raise ProtocolError("revealed share is not a field element") from None
        self._revealed[message.sender] = message

    def _unmask(self) -> None:
        config = self.config
        if len(self._revealed) < config.threshold:
            self._abort("fewer than the threshold clients revealed shares")
            return
        point = config.point
        b_shares: dict[str, list[Share]] = {name: [] for name in self._masked}
        s_shares: dict[str, list[Share]] = {name: [] for name in self._envelopes.keys() - self._masked.keys()}
        for holder in self._ordered(self._revealed):
            reveal = self._revealed[holder]
            for owner, value in reveal.b_shares.items():
                b_shares[owner].append(Share(point[holder], decode_value(value)))
            for owner, value in reveal.s_shares.items():
                s_shares[owner].append(Share(point[holder], decode_value(value)))
        need = self._graph.threshold
        if any(len(shares) < need for shares in (*b_shares.values(), *s_shares.values())):
            self._abort("a secret has fewer shares than its threshold")
            return
        try:
            b_seeds = {owner: reconstruct_bytes(shares[:need]) for owner, shares in b_shares.items()}
            s_keys = {
                owner: KeyPair.from_private_bytes(reconstruct_bytes(shares[:need]))
                for owner, shares in s_shares.items()
            }
        except ValueError:
            self._abort("revealed shares are inconsistent")
            return
        if any(pair.public != self._keys[owner].s_public for owner, pair in s_keys.items()):
            self._abort("revealed shares do not rebuild an advertised key")
            return
        length, bits = config.vector_length, config.modulus_bits
        total = np.zeros(length, dtype=np.uint32)
        for vector in self._masked.values():
            np.add(total, vector, out=total)
        for seed in b_seeds.values():
            np.subtract(total, expand(seed, length, bits), out=total)
        for dropped, pair in s_keys.items():
            for survivor in self._graph.neighbours(dropped) & self._masked.keys():
                shared = agree(pair.private, self._keys[survivor].s_public)
                mask = expand(mask_seed(shared, config.round_id, survivor, dropped), length, bits)
                # The survivor added the mask if it precedes the dropped client, else subtracted it.
                if point[survivor] < point[dropped]:
                    np.subtract(total, mask, out=total)
                else:
                    np.add(total, mask, out=total)
        if bits < 32:
            np.bitwise_and(total, np.uint32((1 << bits) - 1), out=total)
        self._result = total
        self._stage = Stage.DONE

    # -- helpers ----------------------------------------------------------------------------------------

    def _has_quorum(self, members: Collection[str], what: str) -> bool:
        """Whether ``members`` meet the threshold globally and in every neighbourhood; abort if not."""
        if len(members) < self.config.threshold:
            self._abort(f"fewer than the threshold clients {what}")
            return False
        if self._graph.short_neighbourhoods(members, members):
            self._abort(f"a neighbourhood has fewer than its threshold clients that {what}")
            return False
        return True

    def _abort(self, reason: str) -> None:
        self._stage = Stage.ABORTED
        self._abort_reason = reason
        self._masked.clear()
        self._revealed.clear()
        self._envelopes.clear()
        self._result = None

    def _require_after(self, stage: Stage) -> None:
        if self._stage is stage or self._stage is Stage.ABORTED:
            raise ProtocolError(f"not available in stage {self._stage.value}")

    def _ordered(self, names: Collection[str]) -> tuple[str, ...]:
        return tuple(sorted(names, key=self.config.point.__getitem__))
