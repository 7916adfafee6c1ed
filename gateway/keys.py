"""Key material under ``VEILBOX_HOME/keys``: the audit checkpoint signing key and the subject-hash key.

Files are created once with mode 0600 and never rewritten. The Ed25519 public key is exported so regulators
can verify checkpoints offline.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNING_KEY = "audit_ed25519.pem"
PUBLIC_KEY = "audit_ed25519.pub.pem"
SUBJECT_KEY = "subject_hmac.key"


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def create_keys(keys_dir: Path) -> None:
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not (keys_dir / SIGNING_KEY).exists():
        sk = Ed25519PrivateKey.generate()
        _write_secret(
            keys_dir / SIGNING_KEY,
            sk.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()),
        )
        (keys_dir / PUBLIC_KEY).write_bytes(
            sk.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    if not (keys_dir / SUBJECT_KEY).exists():
        _write_secret(keys_dir / SUBJECT_KEY, os.urandom(32))


@dataclass(frozen=True)
class Keys:
    signing: Ed25519PrivateKey
    subject_key: bytes

    @property
    def public(self) -> Ed25519PublicKey:
        return self.signing.public_key()

    @property
    def key_id(self) -> str:
        raw = self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]

    def subject_hash(self, subject: str) -> str:
        """Keyed hash of a subject identifier: stable for joins in the logs, useless for dictionary attacks."""
        return "hs:" + hmac.new(self.subject_key, subject.encode(), hashlib.sha256).hexdigest()[:32]


def load_keys(keys_dir: Path) -> Keys:
    try:
        sk = serialization.load_pem_private_key((keys_dir / SIGNING_KEY).read_bytes(), password=None)
        subject = (keys_dir / SUBJECT_KEY).read_bytes()
    except FileNotFoundError:
        raise RuntimeError(f"no keys in {keys_dir}: run `veilbox init` first") from None
    if not isinstance(sk, Ed25519PrivateKey) or len(subject) != 32:
        raise RuntimeError("key files are malformed")
    return Keys(sk, subject)
