"""The server of a round, as a stage state machine.

Feed client messages to `receive` (a message object or its JSON dict); call `close_stage` when a stage's
deadline passes or `pending()` is empty. Between stages the server publishes `key_roster`,
`forwarded_shares(recipient)` and `unmask_request`; after the last stage `result()` returns the sum of the
survivors' inputs and nothing else. Any stage that ends with fewer than the threshold (or, on a sparse
graph, a neighbourhood below its local threshold, or survivors that are not connected) aborts the round
before anything more is requested from clients; an aborted server drops every masked input and share it
held, and a finished one keeps only the sum, the survivor list and the public keys.

State. `to_state` gives what the server holds as JSON-able plain types (stage, abort reason, result,
survivors, and the four per-sender parts of `STATE_PARTS`: advertised public keys, share envelopes, masked
inputs, revealed shares — exactly what it received, nothing derived); `SecAggServer.from_state` rebuilds an
equal server from it and the public `RoundConfig`. A caller that persists rounds can store one part entry per
message (`entry`, keyed by `STAGE_PART` and sender) and the small rest (`to_state(parts=False)`) per stage;
`expected_in` / `pending_in` answer who a stage waits for from the senders' names alone. A state whose entries
are given as ``None`` restores a server that knows who sent but not what: it accepts messages and closes every
stage but the last (whose sum needs the values); anything that needs a missing value raises `ProtocolError`.
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Mapping
from types import MappingProxyType
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

#: The per-sender parts of the server's state, in protocol order.
STATE_PARTS = ("keys", "envelopes", "masked", "revealed")
#: The part each stage's messages fill (one entry per sender).
STAGE_PART: Mapping[Stage, str] = MappingProxyType({
    Stage.ADVERTISE_KEYS: "keys", Stage.SHARE_KEYS: "envelopes", Stage.MASKED_INPUT: "masked",
    Stage.UNMASK: "revealed"})
#: The part whose senders a stage expects a message from (every participant in ``advertise_keys``).
_COHORT_PART: Mapping[Stage, str] = MappingProxyType({
    Stage.SHARE_KEYS: "keys", Stage.MASKED_INPUT: "envelopes", Stage.UNMASK: "masked"})
STATE_FORMAT = 1


def expected_in(config: RoundConfig, stage: Stage, held: Mapping[str, Collection[str]]) -> frozenset[str]:
    """Who may send a message in ``stage``, given the senders ``held`` per part (`STATE_PARTS`)."""
    if stage is Stage.ADVERTISE_KEYS:
        return frozenset(config.participants)
    part = _COHORT_PART.get(stage)
    return frozenset(held.get(part, ())) if part is not None else frozenset()


def pending_in(config: RoundConfig, stage: Stage, held: Mapping[str, Collection[str]]) -> frozenset[str]:
    """Who may still send in ``stage``, given the senders ``held`` per part."""
    part = STAGE_PART.get(stage)
    received = frozenset(held.get(part, ())) if part is not None else frozenset()
    return expected_in(config, stage, held) - received


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


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
        self._survivors: tuple[str, ...] = ()  # U3, kept once the round is done

    @property
    def stage(self) -> Stage:
        """Where the round is: the stage whose messages the server accepts now, or done/aborted."""
        return self._stage

    @property
    def survivors(self) -> tuple[str, ...]:
        """U3: the clients whose masked inputs are summed (empty before the masked-input stage closes)."""
        if self._stage is Stage.UNMASK:
            return self._ordered(self._masked)
        if self._stage is Stage.DONE:
            return self._survivors
        return ()

    def held(self) -> dict[str, tuple[str, ...]]:
        """The senders the server holds an entry from, per part of `STATE_PARTS` (in arrival order)."""
        return {part: tuple(self._part(part)) for part in STATE_PARTS}

    def expected(self) -> frozenset[str]:
        """Who may send a message in the current stage."""
        return expected_in(self.config, self._stage, self.held())

    def pending(self) -> frozenset[str]:
        """Who may still send in the current stage."""
        return pending_in(self.config, self._stage, self.held())

    # -- state ------------------------------------------------------------------------------------------

    def to_state(self, *, parts: bool = True) -> dict[str, Any]:
        """What the server holds, as JSON-able plain types (bytes as base64); without ``parts``, only the
        stage, abort reason, result and survivors (the per-sender entries come from `entry`)."""
        state: dict[str, Any] = {
            "format": STATE_FORMAT, "stage": self._stage.value, "abort_reason": self._abort_reason,
            "result": _b64(self._result.astype("<u4", copy=False).tobytes()) if self._result is not None else None,
            "survivors": list(self._survivors),
        }
        if parts:
            state["parts"] = {part: {sender: self.entry(part, sender) for sender in self._part(part)}
                              for part in STATE_PARTS}
        return state

    def entry(self, part: str, sender: str) -> Any:
        """One sender's entry of ``part`` as JSON-able plain types (`KeyError` if the server holds none)."""
        if self._part(part)[sender] is None:
            raise ProtocolError(f"the server state was restored without this {part} entry")
        if part == "keys":
            return self._keys[sender].model_dump(mode="json")
        if part == "envelopes":
            return {recipient: _b64(envelope) for recipient, envelope in self._envelopes[sender].items()}
        if part == "masked":
            return _b64(self._masked[sender].astype("<u4", copy=False).tobytes())
        if part == "revealed":
            return self._revealed[sender].to_json()
        raise KeyError(part)

    @classmethod
    def from_state(cls, config: RoundConfig, state: Mapping[str, Any]) -> SecAggServer:
        """The server `to_state` described (with its ``parts``; an entry may be ``None``: held, value not
        given), for ``config``; `ProtocolError` if the state is not one this version wrote."""
        if state.get("format") != STATE_FORMAT:
            raise ProtocolError("unknown server state format")
        try:
            server = cls(config)
            server._stage = Stage(state["stage"])
            server._abort_reason = state.get("abort_reason")
            result = state.get("result")
            if result is not None:
                server._result = np.frombuffer(_unb64(result), dtype=np.dtype("<u4")).astype(np.uint32)
            server._survivors = tuple(state.get("survivors") or ())
            parts = state.get("parts") or {}
            missing: Any = None  # held, value not given
            for sender, keys in (parts.get("keys") or {}).items():
                server._keys[sender] = missing if keys is None else PublicKeys.model_validate(keys)
            for sender, envelopes in (parts.get("envelopes") or {}).items():
                server._envelopes[sender] = (missing if envelopes is None else
                                             {recipient: _unb64(e) for recipient, e in envelopes.items()})
            for sender, vector in (parts.get("masked") or {}).items():
                server._masked[sender] = (missing if vector is None else
                                          np.frombuffer(_unb64(vector), dtype=np.dtype("<u4")).astype(np.uint32))
            for sender, reveal in (parts.get("revealed") or {}).items():
                if reveal is None:
                    server._revealed[sender] = missing
                    continue
                message = parse_client_message(reveal)
                if not isinstance(message, UnmaskShares):
                    raise ProtocolError("revealed entry is not an unmask message")
                server._revealed[sender] = message
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProtocolError(f"malformed server state ({type(exc).__name__})") from None
        return server

    def _require_values(self, *parts: str) -> None:
        for part in parts:
            if any(value is None for value in self._part(part).values()):
                raise ProtocolError(f"the server state was restored without the {part} values")

    def _part(self, part: str) -> Mapping[str, Any]:
        held: dict[str, Mapping[str, Any]] = {"keys": self._keys, "envelopes": self._envelopes,
                                              "masked": self._masked, "revealed": self._revealed}
        return held[part]

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
        self._require_values("keys")
        return KeyRoster(round_id=self.config.round_id, keys=dict(self._keys))

    def forwarded_shares(self, recipient: str) -> ForwardedShares:
        """The envelopes addressed to ``recipient`` by the clients of U2."""
        if self._stage is not Stage.MASKED_INPUT:
            raise ProtocolError(f"shares are forwarded in stage masked_input, not {self._stage.value}")
        if recipient not in self._envelopes:
            raise ProtocolError("recipient did not share keys")
        self._require_values("envelopes")
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
        self._require_values("keys")
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
        self._require_values("keys", "masked", "revealed")
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
        self._survivors = self._ordered(self._masked)
        self._stage = Stage.DONE
        self._masked.clear()  # the sum is out: nothing that could unmask an input is kept
        self._revealed.clear()
        self._envelopes.clear()

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
