"""Signed receipts (``vbr1.<payload>.<signature>``, base64url) and the digests they carry.

The payload names what was answered (product or dataset, agreement, hashed subject(s), digests of the
parameters, consent reference and ciphertexts, the result where the service knows it) and when; the signature is
Ed25519 by the service key (`GET /audit/public-key`) over ``veilbox-receipt|v1|`` + payload.
`veilbox.bank.verify_receipt` checks one offline; `read_receipt` checks one here (the console's receipt reader).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
from typing import Any

from cryptography.exceptions import InvalidSignature

from gateway.context import AppContext

__all__ = ["RECEIPT_PREFIX", "issue_receipt", "read_receipt", "sha256"]

RECEIPT_PREFIX = b"veilbox-receipt|v1|"


def sha256(data: str | bytes) -> str:
    """``sha256:<hex>`` of ``data`` (text as UTF-8): the digests audit entries and receipts carry."""
    return "sha256:" + hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def issue_receipt(ctx: AppContext, claims: dict[str, Any]) -> str:
    """A signed, fixed-shape statement of what was answered (see the module docstring)."""
    body = {"v": 1, "key_id": ctx.keys.key_id,
            "issued_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "nonce": secrets.token_hex(16), **claims}
    payload = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    signature = ctx.keys.signing.sign(RECEIPT_PREFIX + payload)
    return f"vbr1.{_b64url(payload)}.{_b64url(signature)}"


def read_receipt(ctx: AppContext, receipt: str) -> dict[str, Any] | None:
    """The claims of a receipt this service signed (the ``vbr1`` tag and the Ed25519 signature checked), else
    ``None``."""
    try:
        tag, payload_b64, sig_b64 = receipt.split(".")
        payload, signature = (base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)) for x in (payload_b64, sig_b64))
        ctx.keys.public.verify(signature, RECEIPT_PREFIX + payload)
        claims = json.loads(payload)
    except (ValueError, InvalidSignature):
        return None
    if tag != "vbr1" or not isinstance(claims, dict):
        return None
    return claims
