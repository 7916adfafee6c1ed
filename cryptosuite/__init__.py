"""The cryptographic suite: every hash, HMAC, signature, digest prefix and at-rest cipher of the product.

One suite is fixed per home at ``veilbox init --suite intl|sm`` and never changes afterwards:

========  ===========  ==============================  =============================
suite     hash / HMAC  signature                       AEAD (at rest, key wrapping)
========  ===========  ==============================  =============================
``intl``  SHA-256      Ed25519 (RFC 8032)              AES-256-GCM
``sm``    SM3          SM2 with user id 1234567812345678  SM4-GCM (RFC 8998)
========  ===========  ==============================  =============================

API (import ``from cryptosuite import suite_of``; the package imports nothing of ours, every layer may use it):

- ``suite_of(name) -> Suite``; ``SUITES`` names the suites; ``DEFAULT_SUITE`` is ``"intl"``.
- ``Suite.name``, ``Suite.hash_name`` (the digest prefix, ``"sha256"`` or ``"sm3"``).
- ``Suite.hash(data) -> bytes``, ``Suite.hexdigest(data) -> str``, ``Suite.digest(data) -> "<prefix>:<hex>"``,
  ``Suite.hmac(key, data) -> bytes``, ``Suite.hmac_hex(key, data) -> str``.
- Signatures: ``Suite.new_signing_key() -> SigningKey``, ``Suite.signing_key_from_bytes(raw)``,
  ``SigningKey.sign(data) -> bytes``, ``SigningKey.private_bytes() -> bytes`` (32 raw bytes),
  ``SigningKey.public -> VerifyKey``; ``VerifyKey.verify(data, sig) -> bool``, ``VerifyKey.text`` (the published
  form naming its algorithm: ``"ed25519:<hex>"`` or ``"sm2:<hex of 04||x||y>"``), ``VerifyKey.key_id``;
  ``load_verify_key(text)`` reads the published form and learns the algorithm from it (a verifier needs no suite
  setting); ``Suite.sign(priv, data)`` / ``Suite.verify(pub, data, sig)`` are shorthands.
- AEAD: ``Suite.aead_key_size`` (32 for AES-256-GCM, 16 for SM4-GCM), ``Suite.new_aead_key()``,
  ``Suite.aead_encrypt(key, data, aad=b"", nonce=None) -> bytes`` returns ``nonce(12) || ciphertext || tag(16)``
  (a fresh random 96-bit nonce unless one is given, for known-answer tests only), ``Suite.aead_decrypt(key, blob,
  aad=b"") -> bytes`` raises ``AeadError`` on any tampering, wrong key or wrong associated data.

Implementations: OpenSSL through ``cryptography`` for SHA-256, SM3, HMAC, Ed25519, AES-GCM and SM4-GCM; SM2 on
the curve arithmetic of ``gmssl`` with our own Z/e computation, key generation and nonces from ``secrets`` and
range checks (``cryptosuite.sm2``; docs/crypto.md says why and what it costs).
"""

from __future__ import annotations

from cryptosuite._suite import (
    DEFAULT_SUITE,
    SUITES,
    AeadError,
    SigningKey,
    Suite,
    VerifyKey,
    load_verify_key,
    suite_of,
)

__all__ = [
    "DEFAULT_SUITE",
    "SUITES",
    "AeadError",
    "SigningKey",
    "Suite",
    "VerifyKey",
    "load_verify_key",
    "suite_of",
]
