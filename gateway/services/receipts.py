"""Signed receipts (``vbr1.<payload>.<signature>``, base64url) and the digests they carry.

The payload names what was answered (product or dataset, agreement, hashed subject(s), digests of the
parameters, consent reference and ciphertexts, the result where the service knows it) and when; the signature is
the service key's (`GET /audit/public-key`: Ed25519 in the ``intl`` suite, SM2 in ``sm``, `cryptosuite`) over
``veilbox-receipt|v1|`` + payload, and the digests are the suite's (``sha256:`` or ``sm3:``).
`veilbox.bank.verify_receipt` checks one offline, learning the algorithm from the published key; `read_receipt`
checks one here (the console's receipt reader).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
from typing import Any

from gateway.context import AppContext

__all__ = ["RECEIPT_PREFIX", "digest", "issue_receipt", "read_receipt"]

RECEIPT_PREFIX = b"veilbox-receipt|v1|"


def digest(ctx: AppContext, data: str | bytes) -> str:
    """``<hash>:<hex>`` of ``data`` (text as UTF-8) with the home's suite (``sha256:`` or ``sm3:``): the digests
    audit entries and receipts carry."""
    return ctx.keys.suite.digest(data.encode() if isinstance(data, str) else data)


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
    """The claims of a receipt this service signed (the ``vbr1`` tag and the service key's signature checked),
    else ``None``."""
    try:
        tag, payload_b64, sig_b64 = receipt.split(".")
        payload, signature = (base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)) for x in (payload_b64, sig_b64))
        if not ctx.keys.public.verify(RECEIPT_PREFIX + payload, signature):
            return None
        claims = json.loads(payload)
    except ValueError:
        return None
    if tag != "vbr1" or not isinstance(claims, dict):
        return None
    return claims
