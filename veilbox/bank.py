"""The bank's side of Veilbox: encrypted scoring, encrypted threshold checks and receipts.

Keys never leave the bank. The helpers wrap `mpc.he.client` (TenSEAL) and the SDK (`veilbox.client.Client`):

    from veilbox import bank
    out = bank.decide_applicants(client, model_id, [{"age": 41, "industry": "it", ...}, ...], cutoffs=[0.4, ...])
    out.decisions                         # score ≥ cut-off, decrypted locally; the service saw only ciphertexts
    out = bank.score_applicants(client, model_id, applicants)   # logits, where the agreement grants them
    ok = bank.check_thresholds(client, "income_at_least", agreement_id, ["P0000001", ...], [8000, ...],
                               consent_ref="consent-2026-001")
    claims = bank.verify_receipt(receipt, client.audit_public_key()["pem"])

- **Scoring** (CKKS): features are encoded exactly as in training, from the model card's public ``encoding``
  (`sandbox.train.encoding`), then encrypted. `decide_applicants` (the service's default output) also encrypts the
  bank's cut-offs and reads one decision per applicant, ``score ≥ cut-off``, from the sign of the masked value
  ``r·(score − cut-off + η)``: the service never sees the cut-offs and the bank never gets the score.
  `score_applicants` asks for the logits themselves, which only an agreement granting ``score_logits`` allows.
  ``columns`` packs up to N/2 = 4096 applicants per request (one ciphertext per encoded feature; no rotation
  keys); ``row`` sends one ciphertext per applicant (at most 64 per request) and needs rotation keys, so its
  context is large: with the library's default 60/40/40/60-bit modulus it is about 22 MB of base64, beyond the
  service's default 16 MiB body limit, so the row layout here uses a 60/55/60-bit modulus (≈ 12.3 MB; 35 bits of
  headroom over the unrescaled product — room for the decisions' 2^20 mask — and 128-bit secure), and packs about
  11 applicants (0.3 MB each) per request under the limit. The service counts what a request *can* expose against
  the model card's per-agreement limits: decisions, 2 per row ciphertext or per column applicant; logits, 2 per
  row ciphertext and 8192 per column request.
- **Threshold checks** (BFV masked sign): the bank encrypts its thresholds t (``Enc(−t)`` for ``<=`` products,
  as the product's ``encrypted_form`` says) and reads ``x ≥ t`` (or ``x ≤ t``) from the sign of each slot.
  Thresholds must lie within the product's declared ``threshold_bounds``; unknown subjects read ``false``.
- **Receipts**: ``vbr1.<payload>.<signature>``, by the service key over ``veilbox-receipt|v1|`` + payload
  (Ed25519 or SM2, the home's cryptographic suite); `verify_receipt` checks one offline against
  ``GET /v1/audit/public-key``, learning the algorithm from the key itself (`cryptosuite.load_verify_key`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import tenseal as ts
from numpy.typing import NDArray

from cryptosuite import load_verify_key
from mpc.he import client as he
from sandbox.train.encoding import FeatureEncoding
from veilbox.client import Client

__all__ = ["DEFAULT_MAX_BODY_BYTES", "ROW_COEFF_BITS", "BfvKeys", "DecisionResult", "ScoreResult", "ScoringKeys",
           "check_thresholds", "decide_applicants", "encode_applicants", "score_applicants", "scoring_keys",
           "verification_keys", "verify_receipt"]

Layout = Literal["row", "columns"]
#: CKKS modulus for the row layout: keeps the context with rotation keys under the default body limit and leaves
#: 35 bits above the product's scale 2^80 for the decisions' mask (`mpc.he.scoring.plan_decisions`).
ROW_COEFF_BITS = (60, 55, 60)
MAX_ROW_APPLICANTS = 64
#: The service's default request size limit (``VEILBOX_MAX_BODY_BYTES``).
DEFAULT_MAX_BODY_BYTES = 16 << 20
RECEIPT_PREFIX = b"veilbox-receipt|v1|"


@dataclass
class ScoringKeys:
    """A CKKS key pair for one layout: ``context`` holds the secret key (never sent), ``public`` is sent."""

    context: ts.Context
    layout: Layout
    public: str

    @property
    def batch(self) -> int:
        """Applicants per request: N/2 slots in the column layout, 64 ciphertexts in the row layout."""
        slots = int(self.context.data.seal_context().key_context_data().parms().poly_modulus_degree()) // 2
        return slots if self.layout == "columns" else MAX_ROW_APPLICANTS


@dataclass
class BfvKeys:
    context: ts.Context
    public: str


def scoring_keys(layout: Layout = "columns") -> ScoringKeys:
    """Fresh CKKS keys for ``layout`` and the public context to send."""
    if layout == "row":
        ctx = he.make_ckks_context(coeff_mod_bit_sizes=ROW_COEFF_BITS)
        return ScoringKeys(ctx, "row", he.public_context_b64(ctx, galois_keys=True))
    if layout == "columns":
        ctx = he.make_ckks_context()
        return ScoringKeys(ctx, "columns", he.public_context_b64(ctx, galois_keys=False))
    raise ValueError("layout must be 'row' or 'columns'")


def verification_keys() -> BfvKeys:
    """Fresh BFV keys (45-bit batching plain modulus, N = 8192) and the public context to send."""
    ctx = he.make_bfv_context()
    return BfvKeys(ctx, he.public_context_b64(ctx, galois_keys=False))


def encode_applicants(card: Mapping[str, Any], applicants: Sequence[Mapping[str, Any]]) -> NDArray[np.float64]:
    """``(n, d)`` model inputs, encoded from the card's public encoding exactly as in training."""
    encoding = FeatureEncoding.model_validate(card["encoding"])
    return np.asarray([encoding.encode_row(a) for a in applicants], dtype=np.float64).reshape(len(applicants),
                                                                                            encoding.width)


@dataclass(frozen=True)
class ScoreResult:
    logits: NDArray[np.float64]
    scores_counted: int
    scores_used: int
    scores_limit: int

    @property
    def probabilities(self) -> NDArray[np.float64]:
        return he.sigmoid(self.logits)


def _encoded(client: Client, model_id: str, applicants: Sequence[Mapping[str, Any]] | NDArray[Any],
             card: Mapping[str, Any] | None) -> NDArray[np.float64]:
    if isinstance(applicants, np.ndarray):
        x = np.asarray(applicants, dtype=np.float64)
    else:
        x = encode_applicants(card or client.model(model_id)["card"], applicants)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError("no applicants")
    return x


def score_applicants(client: Client, model_id: str, applicants: Sequence[Mapping[str, Any]] | NDArray[Any], *,
                     layout: Layout = "columns", agreement_id: str | None = None,
                     keys: ScoringKeys | None = None, card: Mapping[str, Any] | None = None,
                     max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> ScoreResult:
    """Logits of ``applicants`` (feature dicts, or an already encoded ``(n, d)`` matrix) under encryption.

    Only under an agreement that grants ``score_logits`` (else ``POLICY_DENIED``); the card's
    ``max_logits_per_agreement`` (by default d, fewer than determine the model) bounds them. Applicants go in
    batches (at most `ScoringKeys.batch` per request, and within ``max_body_bytes``, the service's
    ``VEILBOX_MAX_BODY_BYTES``); logits are decrypted locally.
    """
    keys = keys or scoring_keys(layout)
    if keys.layout != layout:
        raise ValueError("the keys were made for the other layout")
    x = _encoded(client, model_id, applicants, card)
    logits: list[NDArray[np.float64]] = []
    counted = used = limit = 0
    for chunk, cts in _requests(keys, x, max_body_bytes):
        resp = client.score(model_id, keys.public, cts, layout, agreement_id, output="logit")
        got = he.decrypt_scores(keys.context, resp["ciphertexts"], layout)
        logits.append(got[:len(chunk)])
        counted += int(resp.get("scores_counted", 0))
        used, limit = int(resp.get("scores_used", 0)), int(resp.get("scores_limit", 0))
    return ScoreResult(np.concatenate(logits), counted, used, limit)


@dataclass(frozen=True)
class DecisionResult:
    """One decision per applicant (``score ≥ cut-off``) and the card's decision meter after the last request."""

    decisions: NDArray[np.bool_]
    decisions_counted: int
    decisions_used: int
    decisions_limit: int


def decide_applicants(client: Client, model_id: str, applicants: Sequence[Mapping[str, Any]] | NDArray[Any],
                      cutoffs: float | Sequence[float] | NDArray[Any], *, layout: Layout = "columns",
                      agreement_id: str | None = None, keys: ScoringKeys | None = None,
                      card: Mapping[str, Any] | None = None,
                      max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> DecisionResult:
    """Decisions ``w·x + b ≥ cut-off`` for ``applicants`` (the service's default output), the cut-offs (one for
    all, or one per applicant, in logit units: σ(cut-off) is the probability threshold) encrypted like the
    features, so the service sees neither. Each decision is exact unless the score lies within a few times the
    flood's σ of the cut-off (docs/mechanisms/he.md). Batching as in `score_applicants`.
    """
    keys = keys or scoring_keys(layout)
    if keys.layout != layout:
        raise ValueError("the keys were made for the other layout")
    x = _encoded(client, model_id, applicants, card)
    t = np.broadcast_to(np.asarray(cutoffs, dtype=np.float64), (len(x),)).copy()
    if not np.isfinite(t).all():
        raise ValueError("cut-offs must be finite")
    decisions: list[NDArray[np.bool_]] = []
    counted = used = limit = 0
    start = 0
    for chunk, cts in _requests(keys, x, max_body_bytes, reserve_ciphertext=True):
        cutoff = he.encrypt_cutoffs(keys.context, t[start:start + len(chunk)])
        start += len(chunk)
        resp = client.score(model_id, keys.public, cts, layout, agreement_id, cutoff=cutoff, output="decision")
        got = he.decrypt_decisions(keys.context, resp["ciphertexts"], layout)
        decisions.append(got[:len(chunk)])
        counted += int(resp.get("scores_counted", 0))
        used, limit = int(resp.get("scores_used", 0)), int(resp.get("scores_limit", 0))
    return DecisionResult(np.concatenate(decisions), counted, used, limit)


def _requests(keys: ScoringKeys, x: NDArray[np.float64], max_body_bytes: int, *, reserve_ciphertext: bool = False
              ) -> Iterator[tuple[NDArray[np.float64], list[str]]]:
    """Batches of encrypted applicants, each request within ``max_body_bytes`` (row ciphertexts are packed
    greedily after the context, leaving room for one more ciphertext — the cut-off — when asked; a column batch is
    one ciphertext per feature)."""
    if keys.layout == "columns":
        for start in range(0, len(x), keys.batch):
            chunk = x[start:start + keys.batch]
            yield chunk, he.encrypt_columns(keys.context, chunk)
        return
    budget = max_body_bytes - len(keys.public) - 1024
    start, size = 0, 0
    cts: list[str] = []
    for i, row in enumerate(x):
        ct = he.encrypt_row(keys.context, row)
        if reserve_ciphertext and i == 0:
            budget -= len(ct) + 8
        if cts and (size + len(ct) + 8 > budget or len(cts) == keys.batch):
            yield x[start:i], cts
            start, cts, size = i, [], 0
        if len(ct) + 8 > budget:
            raise ValueError("the row-layout context and one ciphertext exceed the request size limit")
        cts.append(ct)
        size += len(ct) + 8
    if cts:
        yield x[start:], cts


def check_thresholds(client: Client, product: str, agreement_id: str, subjects: Sequence[str | int],
                     thresholds: Sequence[int], *, consent_ref: str, keys: BfvKeys | None = None,
                     info: Mapping[str, Any] | None = None,
                     consent_ids: Sequence[str] | None = None) -> tuple[list[bool], str]:
    """Encrypted threshold checks: (one answer per subject, the receipt). The service never sees a threshold.

    Subjects are spelt as for a plain check (integer subject columns: ``7`` or ``"7"``, never ``"007"``) and
    each is named once per batch: the service refuses a repeat (``INVALID_REQUEST``, nothing metered), since it
    would be a second threshold for one subject. Every subject of every batch uses one of that subject's
    distinct parameter values. ``info`` is the product (``client.verification(product)``), fetched when not given.
    ``consent_ids``: where the service enforces the consent registry (docs/consent.md), one registered consent id
    per subject, in order.
    """
    if len(subjects) != len(thresholds) or not subjects:
        raise ValueError("one integer threshold per subject")
    if len({str(s) for s in subjects}) != len(subjects):
        raise ValueError("a batch names each subject once")
    info = info or client.verification(product)
    form = info.get("encrypted_form")
    if not form:
        raise ValueError(f"product {product!r} has no encrypted form")
    lo, hi = form["threshold_bounds"]
    ts_ = [int(t) for t in thresholds]
    if any(isinstance(t, bool) or int(t) != t for t in thresholds) or not all(lo <= t <= hi for t in ts_):
        raise ValueError(f"thresholds must be integers within the product's bounds [{lo}, {hi}]")
    sign = -1 if form["bank_encrypts"] == "-t" else 1
    keys = keys or verification_keys()
    encrypted = he.encrypt_thresholds(keys.context, np.asarray([sign * t for t in ts_], dtype=np.int64))
    resp = client.check_encrypted(product, agreement_id, list(subjects), keys.public, encrypted,
                                  consent_ref=consent_ref, consent_ids=list(consent_ids or []))
    signs = he.read_signs(keys.context, resp["ciphertext"])
    return [bool(s) for s in signs[:len(subjects)]], resp["receipt"]


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_receipt(receipt: str, public_key_pem: str) -> dict[str, Any]:
    """The claims of a service receipt after checking its signature with the published key (Ed25519 or SM2, named
    by the key: `cryptosuite.load_verify_key`); ``ValueError`` if it fails."""
    try:
        tag, payload_b64, sig_b64 = receipt.split(".")
        payload, signature = _unb64url(payload_b64), _unb64url(sig_b64)
        key = load_verify_key(public_key_pem)
    except (ValueError, TypeError):
        raise ValueError("malformed receipt") from None
    if tag != "vbr1":
        raise ValueError("unknown receipt format")
    if not key.verify(RECEIPT_PREFIX + payload, signature):
        raise ValueError("the receipt's signature does not verify")
    claims: dict[str, Any] = json.loads(payload)
    return claims


# PSI and anonymous verification (veilbox/bank_psi.py): the service never sees the bank's ids or its subject.
from veilbox.bank_psi import (  # noqa: E402
    AnonymousResult,
    PsiSizeResult,
    PsiSizeSession,
    check_anonymous,
    psi_members,
    psi_size,
    psi_size_session,
)

__all__ += ["AnonymousResult", "PsiSizeResult", "PsiSizeSession", "check_anonymous", "psi_members", "psi_size",
            "psi_size_session"]
