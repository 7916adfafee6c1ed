"""Noise flooding: the last step before a result ciphertext leaves the sandbox.

A result is ``ct = Eval(inputs, secret) `` and the bank decrypts it with its own key. Without care the bank
sees more than the intended output: the second component of ``ct`` is a known linear function of its own
ciphertexts and our secret (weights, or the mask r), and the decryption error carries rounding and
key-switching terms that depend on that secret. Flooding fixes both:

- **Re-randomisation.** We add a *fresh* encryption under the bank's public key. Its ``u·pk`` part makes
  the returned ciphertext's components pseudorandom (RLWE), cutting the algebraic link to our secret.
- **Error flooding.** That encryption carries noise ``E`` drawn by us (CSPRNG, `_rand`), much larger than
  ``δ``, the part of the error that depends on our secret. The bank's view is then ``ideal output + δ + E``,
  statistically close to ``ideal output + E``, which it could simulate alone.

CKKS (scoring). Scoring never rescales: the result stays at the top level with scale Δ², so there is no
rescale rounding. What remains of ``δ`` is (i) ``Σ_j ŵ_j·e_j``, the weights times the bank's own encryption
errors (a bank that tracks its errors can compute it, so for it this is just the exact function of its
noisy inputs; for one that does not, it is weight information below the CKKS precision), and (ii) in the
row layout, the key-switching noise of the rotations, which depends on intermediate ciphertexts and thus on
the weights. ``E`` is an isotropic Gaussian over all N coefficients with ``σ = κ·B_δ``
(``κ = 2^ckks_factor_bits``, default 2^8) where ``B_δ`` bounds ``‖δ‖₂`` for honestly generated inputs and
keys (`ckks_deviation_bound`; the tests check it against measurements). For two weight vectors with the
same ideal output, one result's views differ by KL ≤ 2/κ² = 2^-15 (statistical distance ≤ 2^-8); over Q
results KL ≤ 2Q/κ², which keeps a weight-recovery (search) attack within a square root of its success
against noiseless outputs while Q ≤ 2^15 per (bank, model). The flood also caps the precision of every
logit (at N = 8192: ≈ 6·10^-5·‖w‖₂ per column-layout slot, ≈ 3·10^-6·‖w‖₂ for a row logit averaged over
its slots), so extracting the model to precision ε costs about (σ/ε)² times the d + 1 queries. The flood
is encoded from complex slots (via `_seal`) so that it covers the imaginary half too; the model's bias
rides in the same plaintext.

BFV (masked sign). Exact integers, so flooding costs noise budget, not precision. ``E`` is uniform on
``[-B, B)`` per coefficient with the *largest* safe power of two ``B ≤ q/(8p)`` (q: ciphertext modulus, p: plain
modulus), and we refuse contexts where ``B < 2^s·B₁`` with ``B₁`` the honest bound on ``‖δ‖₁`` and
``s = bfv_statistical_bits`` (default 40): the statistical distance is then ≤ ``B₁/(2B)`` < 2^-40.

Known limit (both schemes): ``B_δ`` and ``B₁`` assume the bank's ciphertexts and keys were generated
honestly. A malicious bank can inflate its input noise or craft evaluation keys to amplify ``δ`` beyond
the flood; nothing on the server can detect this without a zero-knowledge proof of well-formedness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import tenseal as ts

from mpc.he import _rand, _seal
from mpc.he._proto import VectorEnvelope, write_vector
from mpc.he.context import PublicContext

Layout = Literal["row", "columns"]

#: SEAL's error standard deviation (the HE standard's 3.2, i.e. 8/√(2π)).
SEAL_ERROR_STD = 3.2
#: Factor between the heuristic (central-limit) estimate of ``‖δ‖`` and the bound we flood against, when
#: ``δ`` spreads over all N coefficients (its norm then concentrates tightly).
DEVIATION_MARGIN = 2.0
#: The same factor for the row layout, whose error sits on the two coefficients that carry the logit and
#: so does not average out: a complex Gaussian exceeds 6× its rms with probability e^-36.
ROW_DEVIATION_MARGIN = 6.0


@dataclass(frozen=True)
class FloodPolicy:
    """How hard to flood. Larger values hide more and cost CKKS precision / BFV noise budget."""

    ckks_factor_bits: int = 8
    bfv_statistical_bits: int = 40

    def __post_init__(self) -> None:
        if not 0 <= self.ckks_factor_bits <= 30:
            raise ValueError("ckks_factor_bits must lie in [0, 30]")
        if not 20 <= self.bfv_statistical_bits <= 128:
            raise ValueError("bfv_statistical_bits must lie in [20, 128]")


DEFAULT_FLOOD = FloodPolicy()


def fresh_error_std(degree: int) -> float:
    """Std of one coefficient of a SEAL public-key encryption's error at the first data level.

    SEAL encrypts at the key level and divides by the special prime, which leaves the rounding term
    ``u0 + u1·s`` (u uniform in ±1/2, s ternary): ``√((1 + 2N/3)/12)``, about 21 at N = 8192.
    """
    return math.sqrt((1.0 + 2.0 * degree / 3.0) / 12.0)


def ckks_deviation_bound(layout: Layout, weight_norm: float, degree: int, data_primes: int,
                         scale: float) -> float:
    """Bound on ‖δ‖₂ over the N coefficients of an unrescaled scoring result (scale Δ², ``scale`` = Δ).

    ``Δ·‖w‖₂·‖e‖₂`` for the weights times the bank's encryption errors (in the row layout the product with
    the zero-padded weight polynomial, summed over N/2 rotated copies, has the same norm); for the row
    layout also ``log2(N/2)`` key switchings, each ``√(k·N·3.2²/3)`` per coefficient with k data primes,
    every one summed over up to N/2 rotated copies; plus ±1/2 per coefficient of encoding rounding.
    Margin: `DEVIATION_MARGIN` for columns, `ROW_DEVIATION_MARGIN` for rows.
    """
    error_norm = math.sqrt(degree) * fresh_error_std(degree)
    weights = scale * weight_norm * error_norm
    switching = 0.0
    if layout == "row":
        per_switch = math.sqrt(data_primes * degree * SEAL_ERROR_STD**2 / 3.0 + fresh_error_std(degree) ** 2)
        switching = math.sqrt(degree) * math.sqrt(degree / 2) * per_switch
    margin = ROW_DEVIATION_MARGIN if layout == "row" else DEVIATION_MARGIN
    return margin * math.sqrt(weights**2 + switching**2 + degree)


def ckks_flood_std(layout: Layout, weight_norm: float, degree: int, data_primes: int, scale: float,
                   policy: FloodPolicy = DEFAULT_FLOOD) -> float:
    """Per-coefficient standard deviation of the CKKS flood: ``κ·B_δ``."""
    return 2.0**policy.ckks_factor_bits * ckks_deviation_bound(layout, weight_norm, degree, data_primes, scale)


def slot_std(coefficient_std: float, degree: int, scale: float) -> float:
    """Std of the real part of one decoded slot when every coefficient carries N(0, σ²) noise at ``scale``."""
    return coefficient_std * math.sqrt(degree / 2) / scale


def add_ckks_flood(result: ts.CKKSVector, public: PublicContext, coefficient_std: float,
                   offset: float = 0.0) -> ts.CKKSVector:
    """``result + Enc_pk(offset + E)``: E isotropic Gaussian (std ``coefficient_std`` per coefficient).

    Encoded at the result's own level and scale; ``offset`` is added to the real part of every slot.
    """
    degree = public.info.poly_modulus_degree
    cipher: Any = result.data.ciphertext()[0]
    per_part = slot_std(coefficient_std, degree, float(cipher.scale))
    noise = _rand.standard_normal(degree)
    slots = np.empty(degree // 2, dtype=np.complex128)
    slots.real = noise[: degree // 2] * per_part + offset
    slots.imag = noise[degree // 2:] * per_part
    return add_ckks_slots(result, public, slots)


def add_ckks_slots(result: ts.CKKSVector, public: PublicContext, slots: np.ndarray) -> ts.CKKSVector:
    """``result + Enc_pk(slots)``: N/2 complex slot values encoded at the result's level and scale, encrypted
    under the bank's public key (the re-randomisation), and added. The caller draws whatever noise ``slots``
    carry (`add_ckks_flood` for the isotropic flood; the masked decisions of `scoring` scale it per slot)."""
    info = public.info
    if slots.shape != (info.poly_modulus_degree // 2,):
        raise ValueError("one complex value per slot")
    cipher: Any = result.data.ciphertext()[0]
    encoder = public._cache.get("ckks_encoder")
    if encoder is None:
        encoder = public._cache["ckks_encoder"] = _seal.CkksEncoder(public.tenseal)
    flood_ct = encoder.encrypt_complex(np.asarray(slots, dtype=np.complex128), cipher.parms_id(), float(cipher.scale))
    envelope = VectorEnvelope(sizes=(result.size(),), ciphertexts=(flood_ct,), scale=info.global_scale)
    flood = ts.ckks_vector_from(public.tenseal, write_vector(envelope))
    return result + flood


def bfv_deviation_l1_bound(degree: int, plain_modulus: int) -> float:
    """Bound on ‖δ‖₁ of a masked-sign result, δ = P·e_t (P: encoding of the mask, e_t: the bank's noise).

    P has coefficients uniform in [0, p) (E[P²] = p²/3). For the bank's error we take the std of a
    public-key encryption *without* SEAL's special-prime division, ``3.2·√(1 + 4N/3)`` per coefficient
    (SEAL's own is ~16× smaller: the bound is conservative). The negacyclic product has std
    ``√(N/3)·p·σ_fresh`` per coefficient.
    """
    fresh = SEAL_ERROR_STD * math.sqrt(1.0 + 4.0 * degree / 3.0)
    per_coeff = math.sqrt(degree / 3.0) * plain_modulus * fresh
    return DEVIATION_MARGIN * degree * per_coeff


def bfv_flood_bits(data_primes: tuple[int, ...], plain_modulus: int) -> int:
    """``b`` with the flood uniform on ``[-2^b, 2^b)``: the largest power of two not above ``q/(8p)``."""
    return (math.prod(data_primes) // (8 * plain_modulus)).bit_length() - 1


def bfv_flood_shortfall_bits(data_primes: tuple[int, ...], plain_modulus: int, degree: int,
                             policy: FloodPolicy = DEFAULT_FLOOD) -> float:
    """How many bits the maximal flood falls short of ``2^s·B₁`` (≤ 0 means the context is fine)."""
    need = policy.bfv_statistical_bits + math.log2(bfv_deviation_l1_bound(degree, plain_modulus))
    return need - bfv_flood_bits(data_primes, plain_modulus)


def add_bfv_flood(result: ts.BFVVector, public: PublicContext) -> ts.BFVVector:
    """``result + Enc_pk(0) + (E, 0)`` with E uniform on ``[-2^b, 2^b)^N``, ``2^b ≤ q/(8p)`` (`bfv_flood_bits`)."""
    info = public.info
    plain = info.plain_modulus
    if plain is None:
        raise ValueError("BFV flooding needs a plain modulus")
    cipher: Any = result.data.ciphertext()[0]
    level_primes = info.data_primes[: int(cipher.coeff_modulus_size())]
    bits = bfv_flood_bits(level_primes, plain)
    prefix = public._cache.get("seal_header")
    if prefix is None:
        prefix = public._cache["seal_header"] = _seal.header_prefix(cipher)
    limbs = _rand.signed_bits(info.poly_modulus_degree, bits)
    c0 = [_rand.residues(limbs, bits, prime) for prime in level_primes]
    raw = _seal.raw_bfv_ciphertext(prefix, cipher.parms_id(), info.poly_modulus_degree, c0)
    flood = ts.bfv_vector_from(public.tenseal, write_vector(VectorEnvelope((result.size(),), (raw,), None)))
    fresh_zero = ts.bfv_vector(public.tenseal, np.zeros(result.size(), dtype=np.int64).tolist())
    return result + flood + fresh_zero
