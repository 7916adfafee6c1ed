"""BFV masked sign: a yes/no threshold check where the sandbox never sees the bank's threshold.

The bank packs thresholds ``t_i`` (one subject per slot) into ``Enc(t)`` under its BFV key; the sandbox
holds the subjects' integer values ``x_i`` and returns

    ``Enc(r_i·(x_i − t_i) + r'_i)``  with fresh ``r_i ≥ 2`` log-uniform on ``[2, r_max]`` and ``1 ≤ r'_i < r_i``

per slot (CSPRNG, `_rand`), flooded and re-randomised (`flooding`). For integers, ``x − t ≥ 0`` gives a
value in ``[r', r·D + r − 1]`` (positive) and ``x − t ≤ −1`` gives one in ``[−r·D + 1, r' − r]``
(negative), where D bounds ``|x − t|`` from the declared bounds. ``r_max = ⌊((p − 1)/2)/(D + 1)⌋`` keeps
every value inside ``(−p/2, p/2)``, so the bank's centred decoding (values above p/2 read as negative)
gives the sign exactly: ``result > 0 ⇔ x ≥ t``. Contexts whose plain modulus leaves fewer than
``min_mask_bits`` bits for r, or too little noise budget for the flood, are refused.

What the sandbox learns: nothing about t (IND-CPA of BFV under the bank's key). What the bank learns:
the bit ``x ≥ t`` per slot, plus a **magnitude leak**: ``|result| ≈ r·|x − t|`` (within a factor
``1 ± 1/|x − t|``), so ``log2|result| − log2|x − t|`` is uniform on ``[1, log2 r_max]``. One answer
therefore places ``|x − t|`` in the window ``[|result|/r_max, |result|/2]``; with probability
``k/log2(r_max)`` r is below 2^(1+k) and the window is narrow (e.g. r < 8 in about 1 answer in 10 when
r_max ≈ 2^20). Repeated checks on the same subject and threshold average the mask away (``log|x − t|``
to about ``log2(r_max)/√(12·n)`` bits after n answers): the per-subject verification quota bounds n.
The result reveals nothing else about x under honestly generated bank keys and ciphertexts; a bank
that crafts its ciphertext noise can weaken the flood (see `flooding`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tenseal as ts

from mpc.he import _rand, flooding
from mpc.he._payload import ciphertext_invalid, decode_b64, encode_b64, invalid_request
from mpc.he._proto import read_vector
from mpc.he.context import DEFAULT_CONTEXT_LIMITS, ContextLimits, PublicContext, load_public_context
from mpc.he.flooding import DEFAULT_FLOOD, FloodPolicy

#: r must stay exact in a float64 (log-uniform sampling).
MAX_MASK = 2**52 - 1


@dataclass(frozen=True)
class SignBounds:
    """Declared integer ranges of the sandbox's values x and of the bank's thresholds t (inclusive)."""

    value_min: int
    value_max: int
    threshold_min: int
    threshold_max: int

    def __post_init__(self) -> None:
        values = (self.value_min, self.value_max, self.threshold_min, self.threshold_max)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise ValueError("bounds must be integers")
        if self.value_min > self.value_max or self.threshold_min > self.threshold_max:
            raise ValueError("each range needs min <= max")

    @property
    def max_gap(self) -> int:
        """D = max |x − t| over the declared box."""
        return max(self.value_max - self.threshold_min, self.threshold_max - self.value_min, 0)


@dataclass(frozen=True)
class MaskPlan:
    """The mask range chosen for one plain modulus and one set of bounds."""

    plain_modulus: int
    max_gap: int
    r_max: int

    @property
    def mask_bits(self) -> float:
        """Entropy of the multiplicative mask ``r`` in bits, ``log2(r_max)``."""
        return math.log2(self.r_max)


@dataclass(frozen=True)
class SignLimits:
    """Payload limit per ciphertext, the smallest acceptable mask range, and the context limits."""

    max_ciphertext_bytes: int = 2 * 2**20
    min_mask_bits: int = 16
    context: ContextLimits = DEFAULT_CONTEXT_LIMITS


DEFAULT_SIGN_LIMITS = SignLimits()


def plan_mask(plain_modulus: int, bounds: SignBounds, min_mask_bits: int = 16) -> MaskPlan:
    """Largest r_max with ``r_max·(D + 1) ≤ (p − 1)/2``; refuse if it is below ``2^min_mask_bits``."""
    gap = bounds.max_gap
    r_max = min(((plain_modulus - 1) // 2) // (gap + 1), MAX_MASK)
    if r_max < max(2, 2**min_mask_bits):
        needed = math.ceil(math.log2((gap + 1) * 2**min_mask_bits * 2 + 1))
        raise ciphertext_invalid(f"plain modulus of {plain_modulus.bit_length()} bits is too small for the "
                                 f"declared bounds (needs about {needed} bits for a {min_mask_bits}-bit mask)")
    return MaskPlan(plain_modulus=plain_modulus, max_gap=gap, r_max=r_max)


def load_sign_context(context_b64: str | bytes, bounds: SignBounds, *,
                      limits: SignLimits = DEFAULT_SIGN_LIMITS,
                      flood: FloodPolicy = DEFAULT_FLOOD) -> tuple[PublicContext, MaskPlan]:
    """Validate a bank's BFV public context for masked sign under ``bounds``."""
    public = load_public_context(context_b64, scheme="bfv", limits=limits.context)
    info = public.info
    if info.plain_modulus is None:
        raise ciphertext_invalid("BFV context without a plain modulus")
    plan = plan_mask(info.plain_modulus, bounds, limits.min_mask_bits)
    shortfall = flooding.bfv_flood_shortfall_bits(info.data_primes, info.plain_modulus,
                                                  info.poly_modulus_degree, flood)
    if shortfall > 0:
        raise ciphertext_invalid(f"ciphertext modulus leaves {shortfall:.1f} bits too little noise budget "
                                 "to flood the result (use a smaller plain modulus or a larger N)")
    return public, plan


def _load_thresholds(public: PublicContext, encoded: str | bytes, max_bytes: int) -> ts.BFVVector:
    info = public.info
    raw = decode_b64(encoded, max_bytes=max_bytes, what="ciphertext")
    try:
        envelope = read_vector(raw)
    except ValueError:
        raise ciphertext_invalid("ciphertext is not a serialised BFV vector") from None
    if len(envelope.ciphertexts) != 1 or len(envelope.sizes) != 1 or envelope.scale is not None:
        raise ciphertext_invalid("ciphertext must be one BFV ciphertext")
    try:
        vector = ts.bfv_vector_from(public.tenseal, raw)
        cipher: Any = vector.data.ciphertext()[0]
        parms_id = tuple(int(x) for x in cipher.parms_id())
        shape_ok = (cipher.size() == 2 and not cipher.is_ntt_form()
                    and int(cipher.coeff_modulus_size()) == len(info.data_primes))
    except Exception:  # SEAL rejects ciphertexts of other parameter sets or malformed data here
        raise ciphertext_invalid("ciphertext does not deserialise under the given context") from None
    if parms_id != info.first_parms_id or not shape_ok:
        raise ciphertext_invalid("ciphertext is not a fresh two-component ciphertext at the first level")
    if not 1 <= vector.size() <= info.slot_count:
        raise ciphertext_invalid(f"ciphertext declares {vector.size()} slots, outside 1..{info.slot_count}")
    return vector


def _centred(values: Sequence[int], modulus: int) -> list[int]:
    half = modulus // 2
    return [((v + half) % modulus) - half for v in values]


def _mask_terms(r: np.ndarray, r_prime: np.ndarray, xs: list[int], modulus: int) -> tuple[list[int], list[int]]:
    """The plaintexts ``−r`` and ``r·x + r'``, centred modulo p (NumPy when int64 cannot overflow)."""
    largest = max(abs(min(xs)), abs(max(xs)))
    if largest < 2**62 // (int(r.max()) + 1):
        x = np.asarray(xs, dtype=np.int64)
        half = np.int64(modulus // 2)
        offset = (r * x + r_prime + half) % np.int64(modulus) - half
        return (-r).tolist(), offset.tolist()
    offsets = [ri * x + rp for ri, x, rp in zip(r.tolist(), xs, r_prime.tolist(), strict=True)]
    return (-r).tolist(), _centred(offsets, modulus)


def evaluate_masked_sign_with(public: PublicContext, plan: MaskPlan, ciphertext_b64: str | bytes,
                              values: Sequence[int], bounds: SignBounds, *,
                              limits: SignLimits = DEFAULT_SIGN_LIMITS) -> str:
    """Evaluate ``Enc(r·(x − t) + r')`` for a context and plan from `load_sign_context`; base64 result.

    ``values``: the sandbox's integer values, one per slot, in the order of the bank's thresholds.
    """
    if public.info.scheme != "bfv" or plan.plain_modulus != public.info.plain_modulus:
        raise invalid_request("the mask plan does not belong to this BFV context")
    if plan.max_gap < bounds.max_gap:
        raise invalid_request("the mask plan was made for narrower bounds")
    if not values:
        raise invalid_request("no values")
    if len(values) > public.info.slot_count:
        raise invalid_request(f"at most {public.info.slot_count} subjects per ciphertext")
    if any(isinstance(v, bool) or not isinstance(v, int | np.integer) for v in values):
        raise invalid_request("values must be integers")
    xs = [int(v) for v in values]
    if not all(bounds.value_min <= x <= bounds.value_max for x in xs):
        raise invalid_request("a value lies outside the declared bounds")
    thresholds = _load_thresholds(public, ciphertext_b64, limits.max_ciphertext_bytes)
    if thresholds.size() != len(xs):
        raise invalid_request(f"ciphertext holds {thresholds.size()} thresholds for {len(xs)} values")
    r = _rand.log_uniform_integers(len(xs), 2, plan.r_max)
    r_prime = 1 + _rand.integers_below(r - 1)
    scale, offset = _mask_terms(r, r_prime, xs, plan.plain_modulus)
    try:
        result = thresholds.mul(scale) + offset
        return encode_b64(flooding.add_bfv_flood(result, public).serialize())
    except Exception:  # a well-formed but hostile ciphertext can still make SEAL refuse
        raise ciphertext_invalid("evaluation failed on the given ciphertext") from None


def evaluate_masked_sign(context_b64: str | bytes, ciphertext_b64: str | bytes,
                         values: Sequence[int] | np.ndarray, bounds: SignBounds, *,
                         limits: SignLimits = DEFAULT_SIGN_LIMITS,
                         flood: FloodPolicy = DEFAULT_FLOOD) -> str:
    """The whole ``POST /verifications/{name}/check-encrypted`` computation; returns the base64 ciphertext.

    Raises `MpcError` (``CIPHERTEXT_INVALID`` / ``INVALID_REQUEST``) and nothing else for bad input.
    """
    sequence = values.tolist() if isinstance(values, np.ndarray) else list(values)
    if not sequence:
        raise invalid_request("no values")
    public, plan = load_sign_context(context_b64, bounds, limits=limits, flood=flood)
    return evaluate_masked_sign_with(public, plan, ciphertext_b64, sequence, bounds, limits=limits)
