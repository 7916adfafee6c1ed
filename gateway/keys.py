"""The service's own secrets: the audit checkpoint signing key, the subject-hash key and the token pepper.

They are stored only wrapped by the master key, as ``secret:`` rows of the metadata store's keyring
(`catalog.keyring`, `gateway.masterkey`): a copy of the home or of the store without the master key yields none of
them. `create_keys` makes each once (never rewritten) and writes the signing key's public half to
``<home>/keys/audit_ed25519.pub.pem`` so regulators can verify checkpoints offline; `load_keys` unwraps them.
How a key is stored is one load/save pair per key (`_save_signing`/`_load_signing`); homes made before the keys
were wrapped kept them as files in ``keys/``: `import_key_files` wraps them into the store once and deletes them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from catalog.keyring import Keyring
from cryptosuite import SigningKey, Suite, VerifyKey, suite_of

SIGNING_KEY = "audit_ed25519.pem"  # a home made before the keys were wrapped: imported and deleted
PUBLIC_KEY = "audit_ed25519.pub.pem"
SUBJECT_KEY = "subject_hmac.key"  # idem
PSI_KEY = "psi_master.key"  # idem (sandbox.psi)

#: The keyring's names of the service's secrets (``secret:<name>`` rows).
SIGNING_SECRET = "audit-signing"  # noqa: S105 - a name, not a secret
SUBJECT_SECRET = "subject-hmac"  # noqa: S105 - a name, not a secret
PEPPER_SECRET = "token-pepper"  # noqa: S105 - a name, not a secret
PSI_SECRET = "psi-master"  # noqa: S105 - a name, not a secret


_SM2_TAG = b"sm2:"  # an SM2 signing key is stored as this tag and the 32 bytes of d


def _save_signing(sk: SigningKey) -> bytes:
    """The signing key as the bytes the keyring wraps: PKCS#8 DER for Ed25519 (intl), ``sm2:`` + d for SM2 (sm)."""
    if sk.algorithm == "sm2":
        return _SM2_TAG + sk.private_bytes()
    priv = Ed25519PrivateKey.from_private_bytes(sk.private_bytes())
    return priv.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())


def _load_signing(raw: bytes) -> SigningKey:
    """The signing key of whichever suite the home was initialised with (`cryptosuite`)."""
    if raw.startswith(_SM2_TAG):
        try:
            return suite_of("sm").signing_key_from_bytes(raw[len(_SM2_TAG):])
        except ValueError:
            raise RuntimeError("the stored signing key is malformed") from None
    sk = serialization.load_der_private_key(raw, password=None)
    if not isinstance(sk, Ed25519PrivateKey):
        raise RuntimeError("the stored signing key is malformed")
    return suite_of("intl").signing_key_from_bytes(
        sk.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()))


def public_key_file(algorithm: str) -> str:
    """Where the public half is exported: ``audit_ed25519.pub.pem`` or ``audit_sm2.pub.pem``."""
    return f"audit_{algorithm}.pub.pem"


def _write_public(keys_dir: Path, sk: SigningKey) -> None:
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = sk.public.pem.encode()
    path = keys_dir / public_key_file(sk.algorithm)
    if not path.exists() or path.read_bytes() != pem:
        path.write_bytes(pem)


def create_keys(keyring: Keyring, keys_dir: Path, suite: str = "intl") -> None:
    """Create each secret the store lacks, wrapped (existing ones are kept), and export the public key. The signing
    key is of ``suite`` (`cryptosuite.suite_of`): Ed25519 or SM2."""
    signing = keyring.secret_or_new(SIGNING_SECRET, lambda: _save_signing(suite_of(suite).new_signing_key()))
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
    return sk.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())


class Pepper(bytes):
    """The token pepper: 32 secret bytes that also name the suite whose hash and HMAC peppers tokens
    (`gateway.identities.hash_token`)."""

    suite_name: str

    def __new__(cls, key: bytes, suite_name: str = "intl") -> Pepper:
        obj = super().__new__(cls, key)
        obj.suite_name = suite_name
        return obj


@dataclass(frozen=True)
class Keys:
    signing: SigningKey  # cryptosuite: Ed25519 (intl) or SM2 (sm); ``sign(data) -> bytes``
    subject_key: bytes
    token_pepper: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        # the pepper hashes under the home's suite, the one of the signing key
        object.__setattr__(self, "token_pepper", Pepper(self.token_pepper, self.suite.name))

    @classmethod
    def generate(cls, suite: str = "intl") -> Keys:
        """Fresh keys held in memory only (tests and benchmarks of the audit log)."""
        return cls(suite_of(suite).new_signing_key(), os.urandom(32), os.urandom(32))

    @property
    def suite(self) -> Suite:
        """The home's cryptographic suite, the one of its signing key."""
        return suite_of("sm" if self.signing.algorithm == "sm2" else "intl")

    @property
    def public(self) -> VerifyKey:
        """The published key: ``verify(data, signature) -> bool``, ``pem``, ``text``, ``algorithm``."""
        return self.signing.public

    @property
    def key_id(self) -> str:
        """``<algorithm>:`` and 16 hex digits of the suite's hash of the raw public key."""
        return self.public.key_id

    def subject_hash(self, subject: str) -> str:
        """Keyed hash of a subject identifier (the suite's HMAC): stable for joins in the logs, useless for
        dictionary attacks."""
        return "hs:" + self.suite.hmac_hex(self.subject_key, subject.encode())[:32]

    def subject_hashes(self, subjects: Iterable[str]) -> list[str]:
        """`subject_hash` of each of a batch's subjects (the keyed state set up once)."""
        return ["hs:" + h[:32] for h in self.suite.hmac_hex_many(self.subject_key, (s.encode() for s in subjects))]


def load_keys(keyring: Keyring) -> Keys:
    """Unwrap the service's secrets (`catalog.keyring.MasterKeyError` when the master key does not unwrap them)."""
    signing, subject = keyring.secret(SIGNING_SECRET), keyring.secret(SUBJECT_SECRET)
    pepper = keyring.secret(PEPPER_SECRET)
    if signing is None or subject is None or pepper is None:
        raise RuntimeError("no keys in the store: run `veilbox init` first")
    if len(subject) != 32 or len(pepper) != 32:
        raise RuntimeError("stored keys are malformed")
    return Keys(_load_signing(signing), subject, pepper)
