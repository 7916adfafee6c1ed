from __future__ import annotations

import base64
import hmac as _hmac
import os
import textwrap
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import hmac as _chmac
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cryptosuite import sm2

DEFAULT_SUITE = "intl"
SUITES = ("intl", "sm")
# SubjectPublicKeyInfo of an SM2 key: id-ecPublicKey with the curve sm2p256v1 (1.2.156.10197.1.301), then the
# 65-byte uncompressed point, as OpenSSL and GmSSL write it.
_SM2_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")
_PEM_HEAD, _PEM_TAIL = "-----BEGIN PUBLIC KEY-----", "-----END PUBLIC KEY-----"
NONCE_SIZE = 12
TAG_SIZE = 16


class AeadError(ValueError):
    """A ciphertext failed authentication: tampered, truncated, wrong key or wrong associated data."""


def _hash_algo(hash_name: str) -> hashes.HashAlgorithm:
    return hashes.SHA256() if hash_name == "sha256" else hashes.SM3()


def _hash(hash_name: str, data: bytes) -> bytes:
    h = hashes.Hash(_hash_algo(hash_name))
    h.update(data)
    return h.finalize()


class VerifyKey(ABC):
    """A published signature key; ``text`` names its algorithm, so a verifier needs no suite setting."""

    algorithm: str
    hash_name: str

    @property
    @abstractmethod
    def raw(self) -> bytes: ...

    @abstractmethod
    def verify(self, data: bytes, signature: bytes) -> bool: ...

    @property
    def text(self) -> str:
        return f"{self.algorithm}:{self.raw.hex()}"

    @property
    def key_id(self) -> str:
        return f"{self.algorithm}:{_hash(self.hash_name, self.raw).hex()[:16]}"

    @property
    def pem(self) -> str:
        """The key as a PEM SubjectPublicKeyInfo (the algorithm is in it: Ed25519 or SM2's curve OID)."""
        return (
            f"{_PEM_HEAD}\n" + "\n".join(textwrap.wrap(base64.b64encode(self.spki()).decode(), 64)) + f"\n{_PEM_TAIL}\n"
        )

    @abstractmethod
    def spki(self) -> bytes: ...

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VerifyKey) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


class SigningKey(ABC):
    algorithm: str

    @abstractmethod
    def sign(self, data: bytes) -> bytes: ...

    @abstractmethod
    def private_bytes(self) -> bytes: ...

    @property
    @abstractmethod
    def public(self) -> VerifyKey: ...


class Ed25519VerifyKey(VerifyKey):
    algorithm = "ed25519"
    hash_name = "sha256"

    def __init__(self, raw: bytes) -> None:
        self._key = Ed25519PublicKey.from_public_bytes(raw)
        self._raw = raw

    @property
    def raw(self) -> bytes:
        return self._raw

    def spki(self) -> bytes:
        return self._key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    def verify(self, data: bytes, signature: bytes) -> bool:
        try:
            self._key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


class Ed25519SigningKey(SigningKey):
    algorithm = "ed25519"

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def private_bytes(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    @property
    def public(self) -> VerifyKey:
        return Ed25519VerifyKey(
            self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )

    @property
    def cryptography_key(self) -> Ed25519PrivateKey:
        return self._key


class Sm2VerifyKey(VerifyKey):
    algorithm = "sm2"
    hash_name = "sm3"

    def __init__(self, raw: bytes) -> None:
        if not sm2.on_curve(raw):
            raise ValueError("not an SM2 public key (04 || x || y on sm2p256v1)")
        self._raw = raw

    @property
    def raw(self) -> bytes:
        return self._raw

    def spki(self) -> bytes:
        return _SM2_SPKI_PREFIX + self._raw

    def verify(self, data: bytes, signature: bytes) -> bool:
        return sm2.verify(self._raw, data, signature)


class Sm2SigningKey(SigningKey):
    algorithm = "sm2"

    def __init__(self, d: int) -> None:
        n = int(sm2.CURVE["n"], 16)
        if not 1 <= d <= n - 2:
            raise ValueError("SM2 private key out of range")
        self._d = d
        self._public = sm2.public_from_private(d)

    def sign(self, data: bytes) -> bytes:
        return sm2.sign(self._d, self._public, data)

    def private_bytes(self) -> bytes:
        return self._d.to_bytes(32, "big")

    @property
    def public(self) -> VerifyKey:
        return Sm2VerifyKey(self._public)


def load_verify_key(text: str) -> VerifyKey:
    """A published key as a key: ``"ed25519:<hex>"``, ``"sm2:<hex>"`` or a PEM SubjectPublicKeyInfo of either; the
    algorithm is learnt from the key. ``ValueError`` when malformed or of another algorithm."""
    if text.lstrip().startswith(_PEM_HEAD):
        return _load_pem(text)
    alg, _, hexkey = text.strip().partition(":")
    try:
        raw = bytes.fromhex(hexkey)
    except ValueError:
        raise ValueError("public key is not hex") from None
    if alg == "ed25519" and len(raw) == 32:
        return Ed25519VerifyKey(raw)
    if alg == "sm2" and len(raw) == 65:
        return Sm2VerifyKey(raw)
    raise ValueError(f"unknown or malformed public key {alg!r}")


def _load_pem(text: str) -> VerifyKey:
    body = text.strip().removeprefix(_PEM_HEAD).removesuffix(_PEM_TAIL)
    try:
        der = base64.b64decode("".join(body.split()), validate=True)
    except ValueError:
        raise ValueError("malformed PEM public key") from None
    if der.startswith(_SM2_SPKI_PREFIX) and len(der) == len(_SM2_SPKI_PREFIX) + 65:
        return Sm2VerifyKey(der[len(_SM2_SPKI_PREFIX) :])
    try:
        key = serialization.load_der_public_key(der)
    except Exception:  # cryptography raises ValueError or UnsupportedAlgorithm
        raise ValueError("malformed or unsupported PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("neither an Ed25519 nor an SM2 public key")
    return Ed25519VerifyKey(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


@dataclass(frozen=True)
class Suite:
    """One suite of algorithms; build with ``suite_of(name)``."""

    name: str
    hash_name: str
    signature_name: str
    aead_name: str
    aead_key_size: int

    # --- hashes and HMAC -------------------------------------------------------------------------------------
    def hash(self, data: bytes) -> bytes:
        return _hash(self.hash_name, data)

    def hexdigest(self, data: bytes) -> str:
        return self.hash(data).hex()

    def digest(self, data: bytes) -> str:
        """``"<prefix>:<hex>"``, e.g. ``sha256:…`` or ``sm3:…``."""
        return f"{self.hash_name}:{self.hexdigest(data)}"

    def hasher(self) -> hashes.Hash:
        """An incremental hash (``update``/``finalize``) for streams."""
        return hashes.Hash(_hash_algo(self.hash_name))

    def hmac(self, key: bytes, data: bytes) -> bytes:
        h = _chmac.HMAC(key, _hash_algo(self.hash_name))
        h.update(data)
        return h.finalize()

    def hmac_hex(self, key: bytes, data: bytes) -> str:
        return self.hmac(key, data).hex()

    def hmac_hex_many(self, key: bytes, items: Iterable[bytes]) -> list[str]:
        """`hmac_hex` of each item under one key: the keyed state is set up once and copied per item."""
        base = _chmac.HMAC(key, _hash_algo(self.hash_name))
        out = []
        for data in items:
            h = base.copy()
            h.update(data)
            out.append(h.finalize().hex())
        return out

    @staticmethod
    def equal(a: bytes | str, b: bytes | str) -> bool:
        """Constant-time comparison of two MACs or digests."""
        if isinstance(a, str):
            a = a.encode()
        if isinstance(b, str):
            b = b.encode()
        return _hmac.compare_digest(a, b)

    # --- signatures ------------------------------------------------------------------------------------------
    def new_signing_key(self) -> SigningKey:
        if self.signature_name == "ed25519":
            return Ed25519SigningKey(Ed25519PrivateKey.generate())
        return Sm2SigningKey(sm2.new_private())

    def signing_key_from_bytes(self, raw: bytes) -> SigningKey:
        if len(raw) != 32:
            raise ValueError("a private signing key is 32 bytes")
        if self.signature_name == "ed25519":
            return Ed25519SigningKey(Ed25519PrivateKey.from_private_bytes(raw))
        return Sm2SigningKey(int.from_bytes(raw, "big"))

    def sign(self, priv: SigningKey, data: bytes) -> bytes:
        if priv.algorithm != self.signature_name:
            raise ValueError(f"a {priv.algorithm} key in the {self.name} suite")
        return priv.sign(data)

    def verify(self, pub: VerifyKey | str, data: bytes, signature: bytes) -> bool:
        key = load_verify_key(pub) if isinstance(pub, str) else pub
        if key.algorithm != self.signature_name:
            return False
        return key.verify(data, signature)

    # --- AEAD ------------------------------------------------------------------------------------------------
    def new_aead_key(self) -> bytes:
        return os.urandom(self.aead_key_size)

    def aead_encrypt(self, key: bytes, data: bytes, aad: bytes = b"", nonce: bytes | None = None) -> bytes:
        """``nonce || ciphertext || tag``; leave ``nonce`` unset (fresh random 96 bits) except in known-answer tests."""
        if len(key) != self.aead_key_size:
            raise ValueError(f"{self.aead_name} needs a {self.aead_key_size}-byte key")
        nonce = os.urandom(NONCE_SIZE) if nonce is None else nonce
        if len(nonce) != NONCE_SIZE:
            raise ValueError("the nonce is 12 bytes")
        if self.aead_name == "aes-256-gcm":
            return nonce + AESGCM(key).encrypt(nonce, data, aad or None)
        enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
        enc.authenticate_additional_data(aad)
        body = enc.update(data) + enc.finalize()
        return nonce + body + enc.tag

    def aead_decrypt(self, key: bytes, blob: bytes, aad: bytes = b"") -> bytes:
        if len(key) != self.aead_key_size:
            raise ValueError(f"{self.aead_name} needs a {self.aead_key_size}-byte key")
        if len(blob) < NONCE_SIZE + TAG_SIZE:
            raise AeadError("ciphertext too short")
        nonce, body, tag = blob[:NONCE_SIZE], blob[NONCE_SIZE:-TAG_SIZE], blob[-TAG_SIZE:]
        try:
            if self.aead_name == "aes-256-gcm":
                return AESGCM(key).decrypt(nonce, body + tag, aad or None)
            dec = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
            dec.authenticate_additional_data(aad)
            return dec.update(body) + dec.finalize()
        except InvalidTag:
            raise AeadError("ciphertext failed authentication") from None


_SUITES = {
    "intl": Suite("intl", "sha256", "ed25519", "aes-256-gcm", 32),
    "sm": Suite("sm", "sm3", "sm2", "sm4-gcm", 16),
}


def suite_of(name: str) -> Suite:
    """The suite called ``name`` (``"intl"`` or ``"sm"``); ``ValueError`` for any other name."""
    try:
        return _SUITES[name]
    except KeyError:
        raise ValueError(f"unknown cryptographic suite {name!r}: one of {', '.join(SUITES)}") from None
