"""Bank-side helpers: make keys, export the *public* context, encrypt inputs, decrypt and read results.

The bank keeps the returned secret `tenseal.Context` locally and sends only `public_context_b64(...)`
(public key, plus the power-of-two rotation keys when the row layout needs them; never the secret key,
never relinearisation keys, which no Veilbox operation uses). Defaults are 128-bit secure by the
HomomorphicEncryption.org table:

- CKKS scoring: N = 8192, primes of 60, 40, 40, 60 bits (200 ≤ 218), scale 2^40. The product by the
  weights stays unrescaled at scale 2^80 in the 140-bit first level (60 bits of headroom); the last
  60-bit prime is SEAL's special prime for key switching (the row layout's rotations). Decisions
  (`encrypt_cutoffs`, `decrypt_decisions`) use the same context: the masked value ``r·(score − t)`` fits
  with a 2^20 mask (`mpc.he.scoring.plan_decisions`).
- BFV masked sign: N = 8192 (the default 218-bit SEAL modulus), plain modulus a 45-bit batching prime
  (p ≡ 1 mod 2N): room for a 2^20 mask with |x − t| ≤ 2^24, and for a 2^-40 statistical flood.

Randomness for keys and encryptions is SEAL's (seeded from the OS); this module draws none itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tenseal as ts
from Crypto.Util.number import isPrime
from numpy.typing import ArrayLike, NDArray

from mpc.he import _seal
from mpc.he._payload import decode_b64, encode_b64
from mpc.he._proto import fields, write_fields
from mpc.he.context import MAX_COEFF_MODULUS_BITS_128, galois_elements

CKKS_DEGREE = 8192
CKKS_COEFF_BITS = (60, 40, 40, 60)
CKKS_SCALE_BITS = 40
BFV_DEGREE = 8192
BFV_PLAIN_BITS = 45
_MAX_RESULT_BYTES = 64 * 2**20


def is_prime(n: int) -> bool:
    """Primality by pycryptodome (Miller–Rabin with a Lucas test; no known error below 2^64)."""
    return n >= 2 and bool(isPrime(n))


def batching_prime(bits: int, degree: int) -> int:
    """The largest prime below ``2^bits`` with ``p ≡ 1 (mod 2N)``: a plain modulus that allows batching."""
    if not 17 <= bits <= 60:
        raise ValueError("plain modulus size must lie in [17, 60] bits")
    step = 2 * degree
    top: int = 2**bits  # bits >= 17, so an int
    candidate = ((top - 2) // step) * step + 1
    while candidate > top // 2:
        if is_prime(candidate):
            return candidate
        candidate -= step
    raise ValueError(f"no {bits}-bit batching prime for N={degree}")


def make_ckks_context(*, poly_modulus_degree: int = CKKS_DEGREE,
                      coeff_mod_bit_sizes: Sequence[int] = CKKS_COEFF_BITS,
                      scale_bits: int = CKKS_SCALE_BITS) -> ts.Context:
    """A fresh CKKS key pair (secret context) for encrypted scoring.

    No Galois keys are stored in it: `public_context_b64` makes the rotation keys the row layout needs.
    """
    context = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree, coeff_mod_bit_sizes=list(coeff_mod_bit_sizes))
    context.global_scale = 2.0**scale_bits
    return context


def make_bfv_context(*, poly_modulus_degree: int = BFV_DEGREE, plain_modulus: int | None = None,
                     plain_modulus_bits: int = BFV_PLAIN_BITS) -> ts.Context:
    """A fresh BFV key pair (secret context) for masked-sign checks, SEAL's default 128-bit modulus."""
    plain = plain_modulus if plain_modulus is not None else batching_prime(plain_modulus_bits, poly_modulus_degree)
    return ts.context(ts.SCHEME_TYPE.BFV, poly_modulus_degree, plain_modulus=plain, coeff_mod_bit_sizes=[])


def public_context_b64(context: ts.Context, *, galois_keys: bool = True) -> str:
    """The public part of ``context`` as base64: public key, no secret or relinearisation keys.

    ``galois_keys=True`` (row layout) adds keys for the rotations by 1, 2, 4, …, N/4 slots only — about
    half of TenSEAL's full set (which also holds negative steps and conjugation).
    """
    raw = context.serialize(save_public_key=True, save_secret_key=False, save_galois_keys=False,
                            save_relin_keys=False)
    if not galois_keys:
        return encode_b64(raw)
    degree = int(context.data.seal_context().key_context_data().parms().poly_modulus_degree())
    keys = _seal.rotation_keys(context, galois_elements(degree))
    top = fields(raw)
    patched = [(number, wire, write_fields([*fields(value), (5, 2, keys)]) if number == 2 and isinstance(value, bytes)
                else value) for number, wire, value in top]
    return encode_b64(write_fields(patched))


def encrypt_row(context: ts.Context, features: ArrayLike) -> str:
    """One applicant's d features as one CKKS ciphertext (row layout)."""
    values = np.asarray(features, dtype=np.float64).ravel()
    return encode_b64(ts.ckks_vector(context, values.tolist()).serialize())


def encrypt_columns(context: ts.Context, matrix: ArrayLike) -> list[str]:
    """An ``(n, d)`` matrix of n ≤ N/2 applicants as d CKKS ciphertexts, feature j in ciphertext j."""
    data = np.asarray(matrix, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError("matrix must be 2-D: applicants × features")
    return [encode_b64(ts.ckks_vector(context, data[:, j].tolist()).serialize()) for j in range(data.shape[1])]


def _decrypt_ckks(context: ts.Context, encoded: str) -> NDArray[np.float64]:
    vector = ts.ckks_vector_from(context, decode_b64(encoded, max_bytes=_MAX_RESULT_BYTES, what="result"))
    return np.asarray(vector.decrypt(), dtype=np.float64)


def decrypt_scores(context: ts.Context, ciphertexts_b64: Sequence[str], layout: str) -> NDArray[np.float64]:
    """Logits from a scoring response: one per row ciphertext (mean of its slots), or the column batch."""
    if layout == "row":
        return np.array([float(_decrypt_ckks(context, ct).mean()) for ct in ciphertexts_b64])
    if layout == "columns":
        if len(ciphertexts_b64) != 1:
            raise ValueError("a column-layout response holds exactly one ciphertext")
        return _decrypt_ckks(context, ciphertexts_b64[0])
    raise ValueError("layout must be 'row' or 'columns'")


def encrypt_cutoffs(context: ts.Context, cutoffs: ArrayLike) -> str:
    """The bank's cut-offs as one CKKS ciphertext, for decisions: slot i holds the cut-off of applicant i (column
    layout: the i-th applicant of the batch; row layout: the i-th row ciphertext). The service never sees them."""
    values = np.asarray(cutoffs, dtype=np.float64).ravel()
    if values.size == 0 or not np.isfinite(values).all():
        raise ValueError("one finite cut-off per applicant")
    return encode_b64(ts.ckks_vector(context, values.tolist()).serialize())


def decrypt_decisions(context: ts.Context, ciphertexts_b64: Sequence[str], layout: str) -> NDArray[np.bool_]:
    """``score ≥ cut-off`` per applicant from a decision response: the sign of the masked value (row: the mean of
    the ciphertext's N/2 equal slots; columns: one slot per applicant). Only the sign is meaningful."""
    if layout == "row":
        return np.array([float(_decrypt_ckks(context, ct).mean()) > 0 for ct in ciphertexts_b64], dtype=np.bool_)
    if layout == "columns":
        if len(ciphertexts_b64) != 1:
            raise ValueError("a column-layout response holds exactly one ciphertext")
        return _decrypt_ckks(context, ciphertexts_b64[0]) > 0
    raise ValueError("layout must be 'row' or 'columns'")


def sigmoid(logits: ArrayLike) -> NDArray[np.float64]:
    """Probabilities from logits (the server returns logits; σ is applied by the bank)."""
    z = np.asarray(logits, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def encrypt_thresholds(context: ts.Context, thresholds: ArrayLike) -> str:
    """Integer thresholds, one subject per slot, as one BFV ciphertext."""
    values = np.asarray(thresholds)
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError("thresholds must be integers")
    return encode_b64(ts.bfv_vector(context, values.astype(np.int64).ravel().tolist()).serialize())


def decrypt_masked(context: ts.Context, ciphertext_b64: str) -> NDArray[np.int64]:
    """The centred values ``r·(x − t) + r'`` (SEAL decodes residues above p/2 as negative)."""
    raw = decode_b64(ciphertext_b64, max_bytes=_MAX_RESULT_BYTES, what="result")
    return np.asarray(ts.bfv_vector_from(context, raw).decrypt(), dtype=np.int64)


def read_signs(context: ts.Context, ciphertext_b64: str) -> NDArray[np.bool_]:
    """``x ≥ t`` per slot: the masked value is positive exactly when the check holds."""
    return decrypt_masked(context, ciphertext_b64) > 0


def ckks_security_bits_ok(poly_modulus_degree: int, coeff_mod_bit_sizes: Sequence[int]) -> bool:
    """Quick client-side check against the 128-bit table before generating keys."""
    bound = MAX_COEFF_MODULUS_BITS_128.get(poly_modulus_degree)
    return bound is not None and sum(coeff_mod_bit_sizes) <= bound
