"""The service's own secrets: the audit checkpoint signing key, the subject-hash key and the token pepper.

They are stored only wrapped by the master key, as ``secret:`` rows of the metadata store's keyring
(`catalog.keyring`, `gateway.masterkey`): a copy of the home or of the store without the master key yields none of
them. `create_keys` makes each once (never rewritten) and writes the signing key's public half to
``<home>/keys/audit_ed25519.pub.pem`` so regulators can verify checkpoints offline; `load_keys` unwraps them.
How a key is stored is one load/save pair per key (`_save_signing`/`_load_signing`); homes made before the keys
were wrapped kept them as files in ``keys/``: `import_key_files` wraps them into the store once and deletes them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from catalog.keyring import Keyring

SIGNING_KEY = "audit_ed25519.pem"  # a home made before the keys were wrapped: imported and deleted
PUBLIC_KEY = "audit_ed25519.pub.pem"
SUBJECT_KEY = "subject_hmac.key"  # idem
PSI_KEY = "psi_master.key"  # idem (sandbox.psi)

#: The keyring's names of the service's secrets (``secret:<name>`` rows).
SIGNING_SECRET = "audit-signing"  # noqa: S105 - a name, not a secret
SUBJECT_SECRET = "subject-hmac"  # noqa: S105 - a name, not a secret
PEPPER_SECRET = "token-pepper"  # noqa: S105 - a name, not a secret
PSI_SECRET = "psi-master"  # noqa: S105 - a name, not a secret


def _save_signing(sk: Ed25519PrivateKey) -> bytes:
    """The signing key as the bytes the keyring wraps (PKCS#8 DER)."""
    return sk.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())


def _load_signing(raw: bytes) -> Ed25519PrivateKey:
    sk = serialization.load_der_private_key(raw, password=None)
    if not isinstance(sk, Ed25519PrivateKey):
        raise RuntimeError("the stored signing key is malformed")
    return sk


def _write_public(keys_dir: Path, sk: Ed25519PrivateKey) -> None:
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = sk.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    path = keys_dir / PUBLIC_KEY
    if not path.exists() or path.read_bytes() != pem:
        path.write_bytes(pem)


def create_keys(keyring: Keyring, keys_dir: Path) -> None:
    """Create each secret the store lacks, wrapped (existing ones are kept), and export the public key."""
    signing = keyring.secret_or_new(SIGNING_SECRET, lambda: _save_signing(Ed25519PrivateKey.generate()))
    keyring.secret_or_new(SUBJECT_SECRET, lambda: os.urandom(32))
    keyring.secret_or_new(PEPPER_SECRET, lambda: os.urandom(32))
    _write_public(keys_dir, _load_signing(signing))


def import_key_files(keyring: Keyring, keys_dir: Path) -> list[str]:
    """Wrap the plaintext key files of a home made before the keys were wrapped into the store, then delete the
    files (never over a wrapped secret). Returns the names imported."""
    done = []
    for name, secret, read in ((SIGNING_KEY, SIGNING_SECRET, _pem_to_der), (SUBJECT_KEY, SUBJECT_SECRET, bytes),
                               (PSI_KEY, PSI_SECRET, bytes)):
        path = keys_dir / name
        if not path.exists():
            continue
        if keyring.secret(secret) is None:
            keyring.put_secret(secret, read(path.read_bytes()))
            done.append(name)
        path.unlink()
    return done


def _pem_to_der(pem: bytes) -> bytes:
    sk = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(sk, Ed25519PrivateKey):
        raise RuntimeError("key files are malformed")
    return _save_signing(sk)


@dataclass(frozen=True)
class Keys:
    signing: Ed25519PrivateKey
    subject_key: bytes
    token_pepper: bytes = field(default=b"", repr=False)

    @classmethod
    def generate(cls) -> Keys:
        """Fresh keys held in memory only (tests and benchmarks of the audit log)."""
        return cls(Ed25519PrivateKey.generate(), os.urandom(32), os.urandom(32))

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


def load_keys(keyring: Keyring) -> Keys:
    """Unwrap the service's secrets (`catalog.keyring.MasterKeyError` when the master key does not unwrap them)."""
    signing, subject = keyring.secret(SIGNING_SECRET), keyring.secret(SUBJECT_SECRET)
    pepper = keyring.secret(PEPPER_SECRET)
    if signing is None or subject is None or pepper is None:
        raise RuntimeError("no keys in the store: run `veilbox init` first")
    if len(subject) != 32 or len(pepper) != 32:
        raise RuntimeError("stored keys are malformed")
    return Keys(_load_signing(signing), subject, pepper)
