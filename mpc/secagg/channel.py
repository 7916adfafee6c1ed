"""AES-256-GCM envelopes for the Shamir shares one client sends another through the server.

The associated data binds the round id, sender, recipient and stage, so a ciphertext replayed into
another round, redirected to another recipient, attributed to another sender or moved to another stage
fails authentication. The plaintext is the recipient's share of the sender's mask key and of its self-mask
seed, 33 bytes each.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mpc.secagg.errors import CiphertextInvalid, ProtocolError
from mpc.secagg.keys import encode_fields
from mpc.secagg.prg import random_bytes
from mpc.secagg.shamir import SHARE_BYTES, decode_value, encode_value

NONCE_BYTES = 12
TAG_BYTES = 16
SHARES_LABEL = "veilbox/secagg/v1/shares"
CIPHERTEXT_BYTES = NONCE_BYTES + 2 * SHARE_BYTES + TAG_BYTES


def associated_data(round_id: str, sender: str, recipient: str, stage: str) -> bytes:
    """The AES-GCM associated data binding an envelope to its round, sender, recipient and stage."""
    return encode_fields(SHARES_LABEL, round_id, sender, recipient, stage)


def seal(key: bytes, plaintext: bytes, *, round_id: str, sender: str, recipient: str, stage: str) -> bytes:
    """``nonce || AES-GCM(key, nonce, plaintext, ad)`` with a fresh random 96-bit nonce."""
    nonce = random_bytes(NONCE_BYTES)
    ad = associated_data(round_id, sender, recipient, stage)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, ad)


def open_sealed(key: bytes, sealed: bytes, *, round_id: str, sender: str, recipient: str, stage: str) -> bytes:
    """The plaintext of `seal`'s output; `CiphertextInvalid` if anything was altered or rebound."""
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise CiphertextInvalid("encrypted share is truncated")
    ad = associated_data(round_id, sender, recipient, stage)
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], ad)
    except InvalidTag:
        raise CiphertextInvalid() from None


def seal_shares(
    key: bytes, s_share: int, b_share: int, *, round_id: str, sender: str, recipient: str, stage: str
) -> bytes:
    """Encrypt the recipient's share values of the sender's mask key (s) and self-mask seed (b)."""
    plaintext = encode_value(s_share) + encode_value(b_share)
    return seal(key, plaintext, round_id=round_id, sender=sender, recipient=recipient, stage=stage)


def open_shares(
    key: bytes, sealed: bytes, *, round_id: str, sender: str, recipient: str, stage: str
) -> tuple[int, int]:
    """The ``(s_share, b_share)`` values inside a `seal_shares` envelope."""
    plaintext = open_sealed(key, sealed, round_id=round_id, sender=sender, recipient=recipient, stage=stage)
    if len(plaintext) != 2 * SHARE_BYTES:
        raise ProtocolError("encrypted share has the wrong layout")
    try:
        return decode_value(plaintext[:SHARE_BYTES]), decode_value(plaintext[SHARE_BYTES:])
    except ValueError:
        raise ProtocolError("encrypted share holds an out-of-field value") from None
