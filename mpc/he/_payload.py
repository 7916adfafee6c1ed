"""Untrusted bytes in and out: size limits before decoding, strict base64, and the two refusal codes.

Every refusal is an `MpcError`: `InvalidCiphertext` (``CIPHERTEXT_INVALID``) when a context or ciphertext is
undecodable, malformed, insecure or does not match, `InvalidInput` (``INVALID_REQUEST``) when the request around
it is wrong (layout, counts, dimensions, bounds). Messages name the check that failed, never key or plaintext
material, and never the text of a library exception.
"""

from __future__ import annotations

import base64
import binascii

from mpc.errors import InvalidCiphertext, InvalidInput


def ciphertext_invalid(message: str) -> InvalidCiphertext:
    return InvalidCiphertext(message)


def invalid_request(message: str) -> InvalidInput:
    return InvalidInput(message)


def decode_b64(encoded: str | bytes, *, max_bytes: int, what: str) -> bytes:
    """Strict base64 → bytes, refusing anything whose decoded size could exceed ``max_bytes`` *before* decoding."""
    if not isinstance(encoded, str | bytes):
        raise invalid_request(f"{what} must be a base64 string")
    if len(encoded) > 4 * ((max_bytes + 2) // 3):
        raise ciphertext_invalid(f"{what} exceeds the {max_bytes}-byte limit")
    try:
        raw = binascii.a2b_base64(encoded, strict_mode=True)
    except (binascii.Error, ValueError, TypeError):
        raise ciphertext_invalid(f"{what} is not valid base64") from None
    if not raw:
        raise ciphertext_invalid(f"{what} is empty")
    if len(raw) > max_bytes:
        raise ciphertext_invalid(f"{what} exceeds the {max_bytes}-byte limit")
    return raw


def encode_b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
