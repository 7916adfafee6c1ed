"""X25519 key pairs and the HKDF-SHA256 derivations built on their agreements.

Each client holds two fresh key pairs per round: ``c`` (channel: encrypts the Shamir shares it sends to each
peer) and ``s`` (masks: the agreement with a peer seeds their pairwise mask). Derived keys are bound to the
round id, a purpose label and the unordered pair of names, so no key is ever reused across rounds, pairs or
purposes.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
CHANNEL_LABEL = "veilbox/secagg/v1/channel"
MASK_LABEL = "veilbox/secagg/v1/pairwise-mask"


@dataclass(frozen=True)
class KeyPair:
    """An X25519 key pair; ``public`` is the 32-byte raw encoding sent to the server."""

    private: X25519PrivateKey
    public: bytes

    @classmethod
    def generate(cls) -> KeyPair:
        """A fresh key pair from the OS CSPRNG."""
        return cls.from_private(X25519PrivateKey.generate())

    @classmethod
    def from_private(cls, private: X25519PrivateKey) -> KeyPair:
        """The key pair of an existing private key (its public half derived)."""
        return cls(private, private.public_key().public_bytes_raw())

    @classmethod
    def from_private_bytes(cls, data: bytes) -> KeyPair:
        """Rebuild a key pair from its 32 raw private bytes; `ValueError` on a wrong length."""
        return cls.from_private(X25519PrivateKey.from_private_bytes(data))

    def private_bytes(self) -> bytes:
        """The 32 raw private bytes: what a client Shamir-shares so survivors can rebuild a dropped mask key."""
        return self.private.private_bytes_raw()


def load_public(data: bytes) -> X25519PublicKey:
    """A peer's public key from 32 raw bytes; `ValueError` if it is not one."""
    if len(data) != KEY_BYTES:
        raise ValueError("X25519 public key must be 32 bytes")
    return X25519PublicKey.from_public_bytes(data)


def agree(private: X25519PrivateKey, peer_public: bytes) -> bytes:
    """The X25519 shared secret; `ValueError` for a malformed or low-order peer key (all-zero output)."""
    return private.exchange(load_public(peer_public))


def channel_key(shared: bytes, round_id: str, a: str, b: str) -> bytes:
    """The AES-256-GCM key protecting shares between ``a`` and ``b`` in this round."""
    return _derive(shared, CHANNEL_LABEL, round_id, a, b)


def mask_seed(shared: bytes, round_id: str, a: str, b: str) -> bytes:
    """The seed of the pairwise mask between ``a`` and ``b`` in this round."""
    return _derive(shared, MASK_LABEL, round_id, a, b)


def encode_fields(*parts: str) -> bytes:
    """An unambiguous byte encoding of several strings (each UTF-8, prefixed by its 4-byte length)."""
    out = bytearray()
    for part in parts:
        raw = part.encode("utf-8")
        out += len(raw).to_bytes(4, "big") + raw
    return bytes(out)


def _derive(shared: bytes, label: str, round_id: str, a: str, b: str) -> bytes:
    low, high = sorted((a, b))
    info = encode_fields(label, round_id, low, high)
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(shared)
