"""Encrypted linear scoring: the bank learns a decision (or, where granted, the logit) of its own applicants, the
sandbox learns nothing.

A logistic-regression model ``(w ∈ R^d, b)`` stays in plaintext on the server. The bank encrypts feature
vectors under its own CKKS key. Two outputs:

- **decision** (`decide_rows`, `decide_columns`, `decide_encrypted`; the service's default): the bank also
  encrypts its cut-offs t and receives ``Enc(r·(w·x + b − t + η))`` per applicant, r log-uniform on
  ``[1, 2^mask_bits)`` fresh per applicant and η the logit's flood; it reads the sign (score ≥ t). See the
  section "decisions" below and `decision_precision`, `plan_decisions`, `decisions_exposed`.
- **logit** (`score_rows`, `score_columns`, `score_encrypted`): ``Enc(w·x + b)`` (σ is monotone, so the bank
  thresholds or applies σ itself).

Two layouts, as in docs/api.md, "Models and scoring (HE)" (``"row"`` | ``"columns"``):

- **row** — one applicant per ciphertext, its d features in slots 0..d-1. We multiply by ``w`` zero-padded
  (so whatever the bank put in the other slots is cancelled), then rotate-and-add over all N/2 slots, so
  every slot holds the same logit and no partial sum is exposed. Needs the bank's Galois keys. One
  result ciphertext per applicant; all N/2 slots carry the logit (average them for precision).
- **columns** — ciphertext j holds feature j of up to N/2 applicants. Result ``Σ_j w_j·ct_j + b``: one
  ciphertext, no rotations, no Galois keys. The throughput layout.

Nothing is rescaled: the product by the weights (encoded at the context's scale Δ) stays at scale Δ² in
the first-level modulus, which `load_scoring_context` checks has 20 bits of headroom. So there is no
rescale rounding, and in the column layout the result decrypts to exactly ``Σ_j ŵ_j·x̃_j`` (ŵ: the weights
rounded to multiples of 1/Δ, x̃: the bank's own decrypted inputs) plus our flood.

Before returning, every result is flooded (`flooding`): re-randomised with a fresh encryption under the
bank's public key and given Gaussian noise ``σ = 2^8·B_δ`` per coefficient, where ``B_δ`` bounds the
weight-dependent error (weights × the bank's encryption errors, and the row layout's key switching);
KL ≤ 2^-15 per result for honest inputs. The model's bias is added in the same plaintext. Precision at
N = 8192, scale 2^40: columns, about ``6·10^-5·‖w‖₂`` per slot; row, ``1.7·10^-4·‖w‖₂`` per slot, and the
client averages the N/2 equal slots to about ``3·10^-6·‖w‖₂``. See `score_precision`.

What the sandbox learns: nothing about the applicants or the cut-offs (IND-CPA of CKKS under the bank's key;
the server never decrypts). What the bank learns from a logit: its applicants' logits, and — unavoidably — the
model itself after enough queries: a linear model is determined by d+1 logits of chosen inputs
(`extraction_query_bound`). From a decision: the sign, a magnitude of ``score − t`` masked by r (within a factor
2^mask_bits), and — after a few hundred chosen decisions — the model too (binary search on the cut-off). A
bank that encrypts complex slots gets the imaginary part scored too, so each slot yields two real answers
(`scores_exposed`, `decisions_exposed`); the gateway grants logits per agreement and meters both. Weights are
never returned or logged.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import tenseal as ts

from mpc.errors import MpcError
from mpc.he import _rand, flooding
from mpc.he._payload import ciphertext_invalid, decode_b64, encode_b64, invalid_request
from mpc.he._proto import VectorEnvelope, read_vector, write_vector
from mpc.he.context import (
    DEFAULT_CONTEXT_LIMITS,
    ContextLimits,
    PublicContext,
    has_rotation_keys,
    load_public_context,
)
from mpc.he.flooding import DEFAULT_FLOOD, FloodPolicy

Layout = Literal["row", "columns"]
LAYOUTS: tuple[Layout, ...] = ("row", "columns")
Output = Literal["decision", "logit"]
OUTPUTS: tuple[Output, ...] = ("decision", "logit")
MAX_WEIGHT = 2.0**20
HEADROOM_BITS = 20
#: Decisions: the mask r is log-uniform on [1, 2^mask_bits] with mask_bits ≤ MAX_MASK_BITS, and a context must
#: leave room for at least MIN_MASK_BITS of mask and MIN_RANGE_BITS of |score − cut-off| (`plan_decisions`).
MAX_MASK_BITS = 20
MIN_MASK_BITS = 8
MIN_RANGE_BITS = 10
_SIGN_MARGIN_BITS = 2


@dataclass(frozen=True)
class LinearModel:
    """Plaintext logistic-regression parameters; the logit is ``w·x + b``."""

    weights: tuple[float, ...]
    bias: float = 0.0

    def __post_init__(self) -> None:
        values = (*self.weights, self.bias)
        if not self.weights:
            raise ValueError("a linear model needs at least one weight")
        if not all(math.isfinite(v) and abs(v) <= MAX_WEIGHT for v in values):
            raise ValueError(f"weights and bias must be finite with magnitude at most {MAX_WEIGHT:g}")

    @property
    def features(self) -> int:
        """Number of weights: the length ``d`` every applicant vector must have."""
        return len(self.weights)


@dataclass(frozen=True)
class ScoringLimits:
    """Payload limits for one scoring request (the context has its own, in ``context``)."""

    max_ciphertext_bytes: int = 2 * 2**20
    max_row_ciphertexts: int = 64
    max_features: int = 512
    context: ContextLimits = DEFAULT_CONTEXT_LIMITS


DEFAULT_SCORING_LIMITS = ScoringLimits()


@dataclass(frozen=True)
class ScorePrecision:
    """Standard deviation of the flood in one decoded slot, and in the logit as the client reads it."""

    slot_std: float
    logit_std: float


def extraction_query_bound(features: int) -> int:
    """Logits of chosen inputs that determine a d-feature linear model exactly: ``d + 1``.

    ``x = 0`` gives b; ``x = e_j`` gives ``w_j + b``. With noise σ per logit each coefficient is recovered to
    about σ·√2; more queries average the noise down. Rate limits are the only defence.
    """
    if features < 1:
        raise ValueError("features must be positive")
    return features + 1


def scores_exposed(layout: Layout, ciphertexts: int, poly_modulus_degree: int) -> int:
    """Real-valued scores one request can reveal, whatever the bank claims to have packed.

    Row: real and imaginary part of one logit per ciphertext. Columns: every one of the N/2 slots, real and
    imaginary, i.e. N scores, because the server cannot see how many slots the bank filled.
    """
    if layout == "row":
        return 2 * ciphertexts
    if layout == "columns":
        return poly_modulus_degree
    raise invalid_request("layout must be 'row' or 'columns'")


def score_precision(layout: Layout, model: LinearModel, public: PublicContext,
                    flood: FloodPolicy = DEFAULT_FLOOD) -> ScorePrecision:
    """The flood's contribution to the bank's error (CKKS's own approximation error, ~1e-7, comes on top)."""
    info = public.info
    degree, scale = info.poly_modulus_degree, info.global_scale or 1.0
    sigma = flooding.ckks_flood_std(layout, _weight_norm(model), degree, len(info.data_primes), scale, flood)
    per_slot = flooding.slot_std(sigma, degree, scale * scale)
    logit = per_slot / math.sqrt(degree / 2) if layout == "row" else per_slot
    return ScorePrecision(slot_std=per_slot, logit_std=logit)


def load_scoring_context(context_b64: str | bytes, layout: Layout,
                         limits: ScoringLimits = DEFAULT_SCORING_LIMITS) -> PublicContext:
    """Validate a bank's CKKS public context for ``layout`` (Galois keys required for ``row``).

    Scoring multiplies once by plaintext weights at the context's scale Δ and does not rescale, so the
    first-level modulus must hold Δ² with ``HEADROOM_BITS`` to spare (|logit| < 2^19).
    """
    if layout not in LAYOUTS:
        raise invalid_request("layout must be 'row' or 'columns'")
    public = load_public_context(context_b64, scheme="ckks", need_galois=layout == "row", limits=limits.context)
    _prepare(public)
    return public


def _prepare(public: PublicContext) -> None:
    """Refuse a context that cannot hold the unrescaled product; switch TenSEAL's auto-rescale off."""
    info = public.info
    if info.scheme != "ckks":
        raise ciphertext_invalid("scoring needs a CKKS context")
    data_bits = sum(p.bit_length() for p in info.data_primes)
    scale_bits = math.log2(info.global_scale or 1.0)
    if data_bits - 2 * scale_bits < HEADROOM_BITS:
        raise ciphertext_invalid(f"modulus chain too short: {data_bits} bits at the first level cannot hold a "
                                 f"product at scale 2^{2 * scale_bits:.0f} with {HEADROOM_BITS} bits of headroom")
    public.tenseal.auto_rescale = False  # results stay at scale Δ²: no rescale rounding to hide


def _weight_norm(model: LinearModel) -> float:
    return math.sqrt(math.fsum(w * w for w in model.weights))


def _load_vector(public: PublicContext, encoded: str | bytes, max_bytes: int, what: str) -> ts.CKKSVector:
    """Decode one bank ciphertext and check it is a fresh, single-chunk vector under this context."""
    info = public.info
    raw = decode_b64(encoded, max_bytes=max_bytes, what=what)
    try:
        envelope = read_vector(raw)
    except ValueError:
        raise ciphertext_invalid(f"{what} is not a serialised CKKS vector") from None
    if len(envelope.ciphertexts) != 1 or len(envelope.sizes) != 1:
        raise ciphertext_invalid(f"{what} must hold exactly one ciphertext")
    if envelope.scale != info.global_scale:
        raise ciphertext_invalid(f"{what} scale differs from the context's scale")
    try:
        vector = ts.ckks_vector_from(public.tenseal, raw)
        cipher: Any = vector.data.ciphertext()[0]
        parms_id = tuple(int(x) for x in cipher.parms_id())
        shape_ok = (cipher.size() == 2 and cipher.is_ntt_form()
                    and int(cipher.coeff_modulus_size()) == len(info.data_primes))
        scale_ok = float(cipher.scale) == info.global_scale
    except Exception:  # SEAL rejects ciphertexts of other parameter sets or malformed data here
        raise ciphertext_invalid(f"{what} does not deserialise under the given context") from None
    if parms_id != info.first_parms_id:
        raise ciphertext_invalid(f"{what} was not encrypted at this context's first level")
    if not shape_ok or not scale_ok:
        raise ciphertext_invalid(f"{what} is not a fresh two-component ciphertext at the context's scale")
    if not 1 <= vector.size() <= info.slot_count:
        raise ciphertext_invalid(f"{what} declares {vector.size()} values, outside 1..{info.slot_count}")
    return vector


@contextmanager
def _evaluation() -> Iterator[None]:
    """Turn any library failure during evaluation into ``CIPHERTEXT_INVALID`` (hostile but well-formed input)."""
    try:
        yield
    except MpcError:
        raise
    except Exception:
        raise ciphertext_invalid("evaluation failed on the given ciphertexts") from None


def _relabel(vector: ts.CKKSVector, public: PublicContext, size: int) -> ts.CKKSVector:
    """The same ciphertext with its logical size set to ``size`` (TenSEAL sums over the logical size)."""
    envelope = read_vector(vector.serialize())
    return ts.ckks_vector_from(public.tenseal, write_vector(VectorEnvelope((size,), envelope.ciphertexts,
                                                                          envelope.scale)))


def _finish(result: ts.CKKSVector, public: PublicContext, layout: Layout, model: LinearModel,
            flood: FloodPolicy, size: int | None = None) -> str:
    """Flood (adding the bias in the same plaintext), optionally re-label the size, serialise."""
    info = public.info
    sigma = flooding.ckks_flood_std(layout, _weight_norm(model), info.poly_modulus_degree, len(info.data_primes),
                                    info.global_scale or 1.0, flood)
    raw = flooding.add_ckks_flood(result, public, sigma, offset=model.bias).serialize()
    if size is not None:
        envelope = read_vector(raw)
        raw = write_vector(VectorEnvelope((size,), envelope.ciphertexts, envelope.scale))
    return encode_b64(raw)


def _check_row_request(public: PublicContext, ciphertexts_b64: Sequence[str | bytes], model: LinearModel,
                       limits: ScoringLimits) -> None:
    """The row layout's request limits, checked before any ciphertext is parsed."""
    if not ciphertexts_b64:
        raise invalid_request("no ciphertexts")
    if len(ciphertexts_b64) > limits.max_row_ciphertexts:
        raise invalid_request(f"at most {limits.max_row_ciphertexts} row ciphertexts per request")
    if model.features > min(limits.max_features, public.info.slot_count):
        raise invalid_request("model has more features than a row ciphertext can hold")


def _row_vectors(public: PublicContext, ciphertexts_b64: Sequence[str | bytes], model: LinearModel,
                 limits: ScoringLimits) -> list[ts.CKKSVector]:
    """The row layout's applicant ciphertexts, parsed and checked (Galois keys, one vector of d values each)."""
    if not has_rotation_keys(public.tenseal, public.info.poly_modulus_degree):
        raise ciphertext_invalid("row layout needs Galois keys for power-of-two rotations")
    vectors = [_load_vector(public, ct, limits.max_ciphertext_bytes, f"ciphertext {i}")
               for i, ct in enumerate(ciphertexts_b64)]
    for i, vector in enumerate(vectors):
        if vector.size() != model.features:
            raise ciphertext_invalid(f"ciphertext {i} holds {vector.size()} values, the model has "
                                     f"{model.features} features")
    return vectors


def score_rows(public: PublicContext, ciphertexts_b64: Sequence[str | bytes], model: LinearModel, *,
               limits: ScoringLimits = DEFAULT_SCORING_LIMITS,
               flood: FloodPolicy = DEFAULT_FLOOD) -> list[str]:
    """Row layout: one result per applicant ciphertext, the logit in all N/2 slots (size N/2)."""
    _check_row_request(public, ciphertexts_b64, model, limits)
    _prepare(public)
    slots = public.info.slot_count
    vectors = _row_vectors(public, ciphertexts_b64, model, limits)
    out = []
    with _evaluation():
        for vector in vectors:
            product = vector.mul(list(model.weights))  # zero-padded: slots ≥ d are cancelled
            total = _relabel(product, public, slots).sum()
            out.append(_finish(total, public, "row", model, flood, size=slots))
    return out


def score_columns(public: PublicContext, ciphertexts_b64: Sequence[str | bytes], model: LinearModel, *,
                  limits: ScoringLimits = DEFAULT_SCORING_LIMITS,
                  flood: FloodPolicy = DEFAULT_FLOOD) -> str:
    """Column layout: d ciphertexts in (feature j of ≤ N/2 applicants each), one result out."""
    if model.features > limits.max_features:
        raise invalid_request(f"at most {limits.max_features} features")
    if len(ciphertexts_b64) != model.features:
        raise invalid_request(f"column layout needs {model.features} ciphertexts (one per feature), "
                              f"got {len(ciphertexts_b64)}")
    _prepare(public)
    vectors = [_load_vector(public, ct, limits.max_ciphertext_bytes, f"column {j}")
               for j, ct in enumerate(ciphertexts_b64)]
    batch = vectors[0].size()
    if any(v.size() != batch for v in vectors):
        raise ciphertext_invalid("column ciphertexts declare different batch sizes")
    with _evaluation():
        total: ts.CKKSVector | None = None
        for vector, weight in zip(vectors, model.weights, strict=True):
            if weight == 0.0:  # SEAL refuses a product that is transparently zero; the term is zero anyway
                continue
            term = vector * weight
            total = term if total is None else total + term
        if total is None:
            scale = public.info.global_scale or 1.0
            total = ts.ckks_vector(public.tenseal, [0.0] * batch, scale=scale * scale)
        return _finish(total, public, "columns", model, flood)


def _request_layout(layout: str, ciphertexts_b64: Sequence[str | bytes]) -> Layout:
    """The request's layout, once it names one and its ciphertexts are a list (INVALID_REQUEST otherwise)."""
    if layout not in LAYOUTS:
        raise invalid_request("layout must be 'row' or 'columns'")
    if isinstance(ciphertexts_b64, str | bytes) or not isinstance(ciphertexts_b64, Sequence):
        raise invalid_request("ciphertexts must be a list of base64 strings")
    return "row" if layout == "row" else "columns"


def score_encrypted(context_b64: str | bytes, ciphertexts_b64: Sequence[str | bytes], layout: str,
                    model: LinearModel, *, limits: ScoringLimits = DEFAULT_SCORING_LIMITS,
                    flood: FloodPolicy = DEFAULT_FLOOD) -> list[str]:
    """The whole ``POST /models/{id}/score`` computation: validate, evaluate, flood, serialise.

    Returns the response's ``ciphertexts`` list (one per applicant for ``row``, one for ``columns``).
    Raises `MpcError` (``CIPHERTEXT_INVALID`` / ``INVALID_REQUEST``) and nothing else for bad input.
    """
    checked = _request_layout(layout, ciphertexts_b64)
    public = load_scoring_context(context_b64, checked, limits)
    if checked == "row":
        return score_rows(public, ciphertexts_b64, model, limits=limits, flood=flood)
    return [score_columns(public, ciphertexts_b64, model, limits=limits, flood=flood)]


# --- decisions: the masked sign of (score − the bank's encrypted cut-off) -----------------------------------------
#
# The mask r > 0 is folded into the plaintexts (no extra depth): the value r·(ŵ·x̃ + b − t̃) stays at scale Δ²
# and must fit below q₁/(2Δ²) with its sign (`plan_decisions`). The flood puts the logit's noise η *in front of*
# the mask (r·η), so every weight-dependent error term meets at least the flood a logit would get (r ≥ 1), and a
# decision is as hidden as the flooded logit it is computed from; except in the row layout's per-slot flood,
# which stays unscaled so that the spread over the N/2 equal slots does not reveal r. What a decision shows
# beyond the sign is |score − t| within a factor 2^mask_bits (log-uniform r), as for the BFV masked sign.


@dataclass(frozen=True)
class DecisionPlan:
    """How one context masks decisions: ``r`` log-uniform on ``[1, 2^mask_bits)``; a decision is exact (up to the
    flood, `decision_precision`) while ``|score − cut-off| < 2^range_bits``."""

    mask_bits: int
    range_bits: int


def plan_decisions(public: PublicContext) -> DecisionPlan:
    """The mask range a context leaves room for, or ``CIPHERTEXT_INVALID``.

    The masked value ``r·(score − t + η)`` sits unrescaled at scale Δ² in the first-level modulus q₁ and must stay
    below q₁/(2Δ²) to decode with its sign; `_SIGN_MARGIN_BITS` spare bits cover the flood. Whatever is left is
    split between the mask (up to `MAX_MASK_BITS`) and the range of ``|score − t|`` (at least `MIN_RANGE_BITS`).
    """
    _prepare(public)
    info = public.info
    q_bits = math.fsum(math.log2(p) for p in info.data_primes)
    available = math.floor(q_bits - 2 * math.log2(info.global_scale or 1.0)) - _SIGN_MARGIN_BITS
    mask_bits = min(MAX_MASK_BITS, available - MIN_RANGE_BITS)
    if mask_bits < MIN_MASK_BITS:
        raise ciphertext_invalid(f"modulus chain too short for masked decisions: {available} usable bits above the "
                                 f"product's scale leave less than {MIN_MASK_BITS} bits of mask and "
                                 f"{MIN_RANGE_BITS} of range (use a larger first-level modulus, e.g. 60/55/60)")
    return DecisionPlan(mask_bits=mask_bits, range_bits=available - mask_bits)


def decisions_exposed(layout: Layout, ciphertexts: int, batch: int) -> int:
    """Decisions (signs) one request can reveal: the real and the imaginary part of every masked slot.

    Row: 2 per applicant ciphertext. Columns: 2 per declared applicant slot, ``2·batch`` — the slots beyond the
    batch are multiplied by zero (the mask plaintexts are zero-padded), unlike the logit layout's scalar product.
    """
    if layout == "row":
        return 2 * ciphertexts
    if layout == "columns":
        return 2 * batch
    raise invalid_request("layout must be 'row' or 'columns'")


def declared_size(encoded: str | bytes, limits: ScoringLimits = DEFAULT_SCORING_LIMITS) -> int:
    """The logical size a serialised vector declares (the column batch, read off the cut-off before metering)."""
    raw = decode_b64(encoded, max_bytes=limits.max_ciphertext_bytes, what="cut-off")
    try:
        envelope = read_vector(raw)
    except ValueError:
        raise ciphertext_invalid("cut-off is not a serialised CKKS vector") from None
    if len(envelope.sizes) != 1 or not 1 <= envelope.sizes[0] <= 2**16:
        raise ciphertext_invalid("cut-off must be one vector of 1..N/2 values")
    return int(envelope.sizes[0])


def _decision_norm(model: LinearModel) -> float:
    """‖(w, −1)‖₂: the cut-off is one more input, weighted −1 (its encryption error is multiplied like x's)."""
    return math.sqrt(_weight_norm(model) ** 2 + 1.0)


def _decision_slot_std(layout: Layout, model: LinearModel, public: PublicContext, flood: FloodPolicy) -> float:
    info = public.info
    scale = info.global_scale or 1.0
    sigma = flooding.ckks_flood_std(layout, _decision_norm(model), info.poly_modulus_degree, len(info.data_primes),
                                    scale, flood)
    return flooding.slot_std(sigma, info.poly_modulus_degree, scale * scale)


def decision_precision(layout: Layout, model: LinearModel, public: PublicContext,
                       flood: FloodPolicy = DEFAULT_FLOOD) -> float:
    """Std of ν in the decision ``score − t + ν ≥ 0`` (logit units): the logit flood, moved in front of the mask.

    Columns: ν = η, the flood of one column slot. Row: ν = η₀ + Ē/r, the flood of a row logit (mean of N/2 slots)
    plus the mean of the r-independent slot flood divided by r ≥ 1, so at most √2 times the row logit's.
    A decision is exact whenever ``|score − t| > 6·decision_precision`` (error probability < 2·10^-9).
    """
    per_slot = _decision_slot_std(layout, model, public, flood)
    if layout == "columns":
        return per_slot
    return math.sqrt(2.0) * per_slot / math.sqrt(public.info.poly_modulus_degree / 2)


def _masks(count: int, bits: int) -> np.ndarray:
    """``count`` masks log-uniform on ``[1, 2^bits)`` (OS CSPRNG via `_rand`)."""
    return np.exp2(bits * (1.0 - _rand.unit_floats(count)))


def _load_cutoff(public: PublicContext, cutoff_b64: str | bytes, limits: ScoringLimits) -> ts.CKKSVector:
    return _load_vector(public, cutoff_b64, limits.max_ciphertext_bytes, "cut-off")


def decide_columns(public: PublicContext, ciphertexts_b64: Sequence[str | bytes], cutoff_b64: str | bytes,
                   model: LinearModel, *, limits: ScoringLimits = DEFAULT_SCORING_LIMITS,
                   flood: FloodPolicy = DEFAULT_FLOOD) -> str:
    """Column layout decisions: ``Enc(r_i·(w·x_i + b − t_i + η_i))`` for the ``n`` applicants of the batch.

    ``cutoff_b64`` holds the cut-off of applicant i in slot i (size n, like every column). Each weight and the
    cut-off's −1 are multiplied in as zero-padded plaintext vectors ``r ⊙ w_j`` and ``−r``, so slots ≥ n are
    cancelled; the flood adds ``r_i·(b + η_i)`` (η_i complex Gaussian with the column logit flood's std) to slot i
    and an unmasked flood of the same std to the cancelled slots. One result of size n.
    """
    if model.features > limits.max_features:
        raise invalid_request(f"at most {limits.max_features} features")
    if len(ciphertexts_b64) != model.features:
        raise invalid_request(f"column layout needs {model.features} ciphertexts (one per feature), "
                              f"got {len(ciphertexts_b64)}")
    plan = plan_decisions(public)
    vectors = [_load_vector(public, ct, limits.max_ciphertext_bytes, f"column {j}")
               for j, ct in enumerate(ciphertexts_b64)]
    cutoff = _load_cutoff(public, cutoff_b64, limits)
    batch = cutoff.size()
    if any(v.size() != batch for v in vectors):
        raise ciphertext_invalid("column ciphertexts and the cut-off declare different batch sizes")
    slots = public.info.slot_count
    r = _masks(batch, plan.mask_bits)
    per_slot = _decision_slot_std("columns", model, public, flood)
    with _evaluation():
        total = cutoff.mul((-r).tolist())
        for vector, weight in zip(vectors, model.weights, strict=True):
            if weight != 0.0:  # SEAL refuses a transparently zero product; the term is zero anyway
                total = total + vector.mul((r * weight).tolist())
        noise = _rand.standard_normal(2 * slots) * per_slot
        spread = np.ones(slots)
        spread[:batch] = r
        values = np.empty(slots, dtype=np.complex128)
        values.real = spread * noise[:slots]
        values.imag = spread * noise[slots:]
        values.real[:batch] += r * model.bias
        return encode_b64(flooding.add_ckks_slots(total, public, values).serialize())


def decide_rows(public: PublicContext, ciphertexts_b64: Sequence[str | bytes], cutoff_b64: str | bytes,
                model: LinearModel, *, limits: ScoringLimits = DEFAULT_SCORING_LIMITS,
                flood: FloodPolicy = DEFAULT_FLOOD) -> list[str]:
    """Row layout decisions: one result per applicant ciphertext, ``r_k·(w·x_k + b − t_k + η₀) + E`` in all N/2
    slots (size N/2), with ``t_k`` from slot k of ``cutoff_b64`` (size = number of ciphertexts).

    Per applicant: the product with ``r_k·w`` zero-padded plus the cut-off times the one-hot ``−r_k·e_k``, then
    rotate-and-add over all slots (no partial sums, other cut-offs cancelled). The flood is the row logit flood
    E (iid per slot, *not* scaled by r: its spread over the slots must not reveal r) plus ``r_k·(b + η₀)``, one
    complex Gaussian η₀ with the row logit's std in every slot.
    """
    _check_row_request(public, ciphertexts_b64, model, limits)
    plan = plan_decisions(public)
    slots = public.info.slot_count
    vectors = _row_vectors(public, ciphertexts_b64, model, limits)
    cutoff = _load_cutoff(public, cutoff_b64, limits)
    if cutoff.size() != len(vectors):
        raise ciphertext_invalid(f"the cut-off holds {cutoff.size()} values for {len(vectors)} applicants")
    n = len(vectors)
    r = _masks(n, plan.mask_bits)
    per_slot = _decision_slot_std("row", model, public, flood)
    per_logit = per_slot / math.sqrt(slots)
    weights = np.asarray(model.weights, dtype=np.float64)
    out = []
    with _evaluation():
        for k, vector in enumerate(vectors):
            picked = np.zeros(n)
            picked[k] = -r[k]
            product = _relabel(vector.mul((r[k] * weights).tolist()), public, slots)
            threshold = _relabel(cutoff.mul(picked.tolist()), public, slots)
            total = (product + threshold).sum()
            noise = _rand.standard_normal(2 * slots + 2)
            values = np.empty(slots, dtype=np.complex128)
            values.real = noise[:slots] * per_slot + r[k] * (model.bias + noise[-2] * per_logit)
            values.imag = noise[slots:2 * slots] * per_slot + r[k] * noise[-1] * per_logit
            raw = flooding.add_ckks_slots(total, public, values).serialize()
            envelope = read_vector(raw)
            out.append(encode_b64(write_vector(VectorEnvelope((slots,), envelope.ciphertexts, envelope.scale))))
    return out


def decide_encrypted(context_b64: str | bytes, ciphertexts_b64: Sequence[str | bytes], cutoff_b64: str | bytes,
                     layout: str, model: LinearModel, *, limits: ScoringLimits = DEFAULT_SCORING_LIMITS,
                     flood: FloodPolicy = DEFAULT_FLOOD) -> list[str]:
    """The whole decision computation of ``POST /models/{id}/score`` (``output: "decision"``).

    Returns the response's ``ciphertexts`` (one per applicant for ``row``, one for ``columns``). Raises `MpcError`
    (``CIPHERTEXT_INVALID`` / ``INVALID_REQUEST``) and nothing else for bad input.
    """
    checked = _request_layout(layout, ciphertexts_b64)
    public = load_scoring_context(context_b64, checked, limits)
    if checked == "row":
        return decide_rows(public, ciphertexts_b64, cutoff_b64, model, limits=limits, flood=flood)
    return [decide_columns(public, ciphertexts_b64, cutoff_b64, model, limits=limits, flood=flood)]
