"""Homomorphic encryption for Veilbox: encrypted linear scoring (CKKS) and masked-sign checks (BFV).

The bank encrypts under its own key and sends only a *public* TenSEAL context; the sandbox evaluates on
ciphertexts with plaintext secrets (model weights, subjects' values), floods the result and returns a
ciphertext only the bank can decrypt. The sandbox never decrypts anything.

Modules
-------
- `context` — validate a bank's public context: no secret key, expected scheme, allowed N, 128-bit
  parameters (HomomorphicEncryption.org table, and SEAL's own check), depth, Galois keys, byte limits.
- `scoring` — decisions ``Enc(r·(w·x + b − t + η))`` against the bank's encrypted cut-off t (the default: only
  the sign is meant to be read), or logits ``w·x + b``, in the row layout (one applicant per ciphertext) or the
  column layout (feature j of N/2 applicants per ciphertext); the model-extraction bound ``d + 1``.
- `masked_sign` — ``Enc(r·(x − t) + r')`` for yes/no thresholds, with its magnitude leak stated.
- `flooding` — re-randomisation and noise flooding applied to every result, and its parameters.
- `client` — the bank's side: key generation, public-context export, encryption, decryption.
- internals: `_rand` (every random number, OS CSPRNG), `_seal` (bridge to SEAL below TenSEAL),
  `_proto` (TenSEAL's vector envelope), `_payload` (base64, size limits, error codes).

Every refusal is an `mpc.errors.MpcError` with code ``CIPHERTEXT_INVALID`` or ``INVALID_REQUEST``.
"""

from mpc.he.context import (
    MAX_COEFF_MODULUS_BITS_128,
    ContextInfo,
    ContextLimits,
    PublicContext,
    load_public_context,
    security_violations,
)
from mpc.he.flooding import FloodPolicy
from mpc.he.masked_sign import (
    MaskPlan,
    SignBounds,
    SignLimits,
    evaluate_masked_sign,
    evaluate_masked_sign_with,
    load_sign_context,
    plan_mask,
)
from mpc.he.scoring import (
    DecisionPlan,
    LinearModel,
    ScorePrecision,
    ScoringLimits,
    decide_columns,
    decide_encrypted,
    decide_rows,
    decision_precision,
    decisions_exposed,
    declared_size,
    extraction_query_bound,
    load_scoring_context,
    plan_decisions,
    score_columns,
    score_encrypted,
    score_precision,
    score_rows,
    scores_exposed,
)

__all__ = [
    "MAX_COEFF_MODULUS_BITS_128",
    "ContextInfo",
    "ContextLimits",
    "DecisionPlan",
    "FloodPolicy",
    "LinearModel",
    "MaskPlan",
    "PublicContext",
    "ScorePrecision",
    "ScoringLimits",
    "SignBounds",
    "SignLimits",
    "decide_columns",
    "decide_encrypted",
    "decide_rows",
    "decision_precision",
    "decisions_exposed",
    "declared_size",
    "evaluate_masked_sign",
    "evaluate_masked_sign_with",
    "extraction_query_bound",
    "load_public_context",
    "load_scoring_context",
    "load_sign_context",
    "plan_decisions",
    "plan_mask",
    "score_columns",
    "score_encrypted",
    "score_precision",
    "score_rows",
    "scores_exposed",
    "security_violations",
]
