r"""Secure aggregation: the server learns the sum of the surviving clients' vectors and nothing else.

Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine Learning" (CCS 2017),
double masking with t-of-n dropout recovery; SecAgg+ (Bell et al., CCS 2020) neighbour graph when n > 100.
Vectors live in Z_{2^m}, m = ``modulus_bits`` ≤ 32 (uint32 words); `quantize` maps floats into it.

Stages, and what the server sees at each
----------------------------------------
0. ``advertise_keys`` — each client u sends two fresh X25519 public keys, ``c_u`` (channel) and ``s_u``
   (masks). Server sees: public keys; learns U1, who showed up. It publishes the roster of U1.
1. ``share_keys`` — u draws a 32-byte self-mask seed ``b_u`` (OS CSPRNG) and Shamir-shares both ``b_u``
   and its mask private key ``s_u^SK`` over GF(2^256 + 297) among its closed neighbourhood in U1 (threshold
   t; ``t_k`` on a sparse graph). Each neighbour's pair of shares travels in an AES-256-GCM envelope keyed
   by HKDF-SHA256(X25519(c_u, c_v)); the associated data binds round id, sender, recipient and stage.
   Server sees: ciphertexts and who sent to whom; learns U2. It forwards each client its envelopes.
2. ``masked_input`` — u opens its envelopes (a bad one aborts u with ``CIPHERTEXT_INVALID``) and sends
   ``y_u = x_u + PRG(b_u) + Σ_{v ∈ U2 ∩ N(u)} ±PRG(s_uv) mod 2^m`` with ``s_uv`` =
   HKDF(X25519(s_u, s_v)) and PRG = AES-256-CTR keyed by HKDF(seed) (+ if u precedes v in the round's
   participant order, − otherwise). Server sees: each ``y_u``, which is uniformly distributed on its own;
   learns U3, the survivors.
3. ``unmask`` — the server sends U3; each survivor returns its shares of ``b_v`` for every survivor v and
   of ``s_v^SK`` for every client v in U2 \ U3 (never both kinds for the same v). The server rebuilds
   them from t shares, strips the self-masks of U3 and the survivors' pairwise masks with the dropped,
   and outputs ``Σ_{u ∈ U3} x_u mod 2^m``. Server sees: t or more shares per secret, hence the ``b`` of
   survivors and the mask keys of the dropped — never both for one client.

Guarantee and assumptions
-------------------------
- Honest-but-curious server: it runs the protocol faithfully and tries to learn from what it sees.
  Clients talk only to the server over authenticated channels (the gateway's tokens); every key, seed and
  share is fresh per round.
- Correctness with up to n − t dropouts: the sum is output whenever every stage keeps at least t clients
  (and, on a sparse graph, every neighbourhood keeps ``t_k``); otherwise the round aborts (`RoundAborted`)
  before the server asks for anything that could unmask an input.
- Security (the paper's honest-but-curious theorems): any set of clients alone learns nothing about the
  others' inputs, whatever its size; the server together with any set C of clients with |C| < t learns
  nothing beyond ``Σ_{u ∈ U3 \ C} x_u``, the sum of the honest survivors' inputs (its joint view is
  simulatable from the inputs of C and that sum). Computational: X25519 (DH), HKDF, AES-CTR as a PRG and
  AES-GCM as an AEAD; Shamir hiding is perfect. We require a strict majority, n/2 < t ≤ n.
- SecAgg+ (n > 100): the bound becomes local and statistical — a coalition holding ``t_k`` shares of some
  neighbourhood could unmask that client — so the ring order is uniformly random (from the public round
  seed) and the server refuses to unmask a disconnected survivor set (which would reveal partial sums).

Known limits
------------
- No active (malicious-server) security: the ConsistencyCheck round and the client signatures under a PKI
  of the paper's active variant are not implemented. A malicious server could substitute keys (Sybils) or
  show different survivor lists to different clients. (With that round the paper tolerates an active
  server plus n_C clients when t > (n + n_C)/2, e.g. t > 2n/3 and n_C < n/3.)
- On sparse graphs the default degree ``4⌈log2 n⌉`` is a heuristic O(log n), not a computed failure bound,
  and the server picks the public seed.
- Inputs are not range-checked: a client can bias the sum by any amount mod 2^m (no robustness to
  poisoning). The sum itself is released exactly — add differential-privacy noise upstream if it must be
  protected; t bounds how few inputs it can cover.
- Metadata (who dropped at which stage, message sizes and timing) is visible. Shamir arithmetic on
  Python ints is not constant-time; secrets are not zeroised from memory.

Modules: `config` (RoundConfig, Stage), `messages` (wire models and their binary frame), `client`, `server` (with
its serialisable state), `simulate` (in-memory driver), `shamir`, `prg` (all randomness), `keys` (X25519 + HKDF),
`channel` (AES-GCM envelopes), `graph` (neighbour graph), `quantize` (fixed point), `errors`.
"""

from mpc.secagg.client import SecAggClient
from mpc.secagg.config import RoundConfig, Stage, new_round
from mpc.secagg.errors import CiphertextInvalid, ProtocolError, RoundAborted
from mpc.secagg.graph import MaskGraph
from mpc.secagg.messages import (
    FRAME_MEDIA_TYPE,
    AdvertiseKeys,
    ClientMessage,
    ForwardedShares,
    KeyRoster,
    MaskedInput,
    PublicKeys,
    ServerMessage,
    ShareKeys,
    UnmaskRequest,
    UnmaskShares,
    decode_frame,
    encode_frame,
    parse_client_message,
    parse_server_message,
)
from mpc.secagg.quantize import FixedPoint, dequantize_sum, quantize
from mpc.secagg.server import STAGE_PART, STATE_PARTS, SecAggServer, expected_in, pending_in
from mpc.secagg.simulate import RoundOutcome, simulate_round

__all__ = [
    "FRAME_MEDIA_TYPE",
    "STAGE_PART",
    "STATE_PARTS",
    "AdvertiseKeys",
    "CiphertextInvalid",
    "ClientMessage",
    "FixedPoint",
    "ForwardedShares",
    "KeyRoster",
    "MaskGraph",
    "MaskedInput",
    "ProtocolError",
    "PublicKeys",
    "RoundAborted",
    "RoundConfig",
    "RoundOutcome",
    "SecAggClient",
    "SecAggServer",
    "ServerMessage",
    "ShareKeys",
    "Stage",
    "UnmaskRequest",
    "UnmaskShares",
    "decode_frame",
    "dequantize_sum",
    "encode_frame",
    "expected_in",
    "new_round",
    "parse_client_message",
    "parse_server_message",
    "pending_in",
    "quantize",
    "simulate_round",
]
