"""Key management: a master key kept apart from ``VEILBOX_HOME``, and every other key stored only wrapped by it.

**Master-key providers** (`MasterKeyProvider`) wrap and unwrap key material; the master key itself never lies in
the home and never leaves its provider's object:

- `FileProvider`: 32 random bytes in a key file that must lie *outside* the home and be readable by its owner only
  (``VEILBOX_MASTER_KEY_FILE``; a file inside the home, or group- or world-readable, is refused). `veilbox init`
  creates the default one beside the home: ``<home>.master.key`` (`default_key_file`), mode 0600.
- `EnvProvider`: ``VEILBOX_MASTER_KEY``, the base64 of 32 bytes.
- `Pkcs11Provider`: an AES key in a PKCS#11 token (``VEILBOX_PKCS11_MODULE``, token label, PIN, key label); the
  token wraps and unwraps (AES-GCM inside the token), the key never leaves it. Needs ``python-pkcs11``.

A provider's ``wrap(key_id, plaintext_key)`` binds the blob to ``key_id`` (authenticated data): a blob moved to
another id does not unwrap. ``unwrap`` fails with `MasterKeyError` (reason ``master_key.wrong``) for a blob the
master key did not wrap; ``describe()`` names the provider and a fingerprint, never a secret.

**Data keys and secrets** (`Keyring`, over the metadata store's ``data_keys`` table, migration ``0012``): one
random 256-bit key per protected object, stored only wrapped. The API the encrypted files use::

    keyring = ctx.keyring                              # gateway.context.AppContext.keyring (a Keyring)
    key = keyring.new_data_key("dataset:tax_income")   # 32 fresh bytes, stored wrapped; ALREADY_EXISTS if present
    key = keyring.data_key("dataset:tax_income")       # the same 32 bytes, unwrapped (DataKeyDestroyed if gone)
    key = keyring.data_key_or_new("model:job_…")       # the object's key, created on first use
    keyring.destroy("dataset:tax_income", journal=j)   # crypto-shredding: the wrapped key is deleted
    keyring.rewrap_all(new_provider)                   # rotation: every wrapped key re-wrapped, no data touched

Object ids are ``<kind>:<name>`` (``dataset:``, ``model:``, ``export:``, ``side:``…; at most 200 characters);
``secret:`` is reserved for the service's own secrets (`Keyring.put_secret`/`Keyring.secret`: the audit signing
key, the subject-hash key, the token pepper, the PSI master secret — `gateway.keys`). ``destroy`` and
``rewrap_all`` take a ``journal`` (`policies.journal`): the deletion or rotation and its audit entry commit
together. Encrypt with the data key through the cryptographic suite's AEAD; never write a data key to a file.

Under a file or environment key, wrapping uses the home's suite (`_RawKeyProvider.use_suite`, set when the home
is opened): AES-256-GCM under the master key for ``intl`` (blob ``b"\\x01" + nonce + ciphertext``), SM4-GCM
(`cryptosuite`) under a 128-bit key derived from it by HMAC-SM3 for ``sm`` (blob ``b"\\x03" + …``), the key id
as authenticated data either way; unwrapping reads the blob's first byte, so a home's keys unwrap whichever suite
wrapped them. A PKCS#11 token wraps with its own AES-GCM (blob ``b"\\x02" + …``). The fingerprint ``describe()``
names a file or environment key by is the home suite's HMAC under it (`fingerprint`: HMAC-SM3 in ``sm``).
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Column, Connection, DateTime, Engine, LargeBinary, String, Table, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from catalog import _tables
from catalog.errors import ALREADY_EXISTS, DomainError
from cryptosuite import AeadError, suite_of

__all__ = [
    "KEY_BYTES",
    "DataKeyDestroyed",
    "EnvProvider",
    "FileProvider",
    "Keyring",
    "MasterKeyError",
    "MasterKeyProvider",
    "Pkcs11Provider",
    "create_key_file",
    "default_key_file",
    "fingerprint",
]

KEY_BYTES = 32
SECRET_PREFIX = "secret:"  # noqa: S105 - an id prefix, not a secret
_WRAP_V1 = b"\x01"  # AES-256-GCM under the raw master key
_WRAP_SM4 = b"\x03"  # SM4-GCM under HMAC-SM3(master, label)[:16]
_SM4_LABEL = b"veilbox-wrap-key|sm4-gcm"
_NONCE = 12
_MAX_ID = 200

#: Wrapped keys, one row per protected object or service secret (migration 0012_data_keys).
data_keys = Table(
    "data_keys",
    _tables.metadata,
    Column("object_id", String(_MAX_ID), primary_key=True),
    Column("wrapped", LargeBinary, nullable=False),
    Column("master", String(300), nullable=False),  # the wrapping provider's describe(): kind and fingerprint
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("wrapped_at", DateTime(timezone=True), nullable=False),
)

Journal = Callable[[Connection], None]


class MasterKeyError(RuntimeError):
    """The master key is missing, refused or not the one that wrapped the home's keys: the service fails closed.

    ``reason`` is stable: ``master_key.missing``, ``master_key.unsafe`` (a key file inside the home or readable by
    others, a malformed key), ``master_key.wrong`` (unwrapping failed), ``master_key.unavailable`` (a PKCS#11
    module, token or key that cannot be used)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class DataKeyDestroyed(LookupError):
    """No wrapped key for this object: never created, or destroyed (crypto-shredded)."""


# --- the AEAD used for wrapping --------------------------------------------------------------------------------


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, blob: bytes, aad: bytes) -> bytes:
    return AESGCM(key).decrypt(blob[:_NONCE], blob[_NONCE:], aad)


def _aad(key_id: str) -> bytes:
    return b"veilbox-wrap|v1|" + key_id.encode()


def fingerprint(master: bytes, suite: str = "intl") -> str:
    """A public name of a raw master key: the home suite's HMAC under it (HMAC-SHA-256 in ``intl``, HMAC-SM3 in
    ``sm``), 16 hex digits; says nothing about the key."""
    return suite_of(suite).hmac_hex(master, b"veilbox master key fingerprint")[:16]


# --- providers -------------------------------------------------------------------------------------------------


@runtime_checkable
class MasterKeyProvider(Protocol):
    """Wraps and unwraps key material under a master key it never reveals."""

    def wrap(self, key_id: str, plaintext_key: bytes) -> bytes:
        """``plaintext_key`` wrapped and bound to ``key_id``."""
        ...

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        """The key ``wrap(key_id, …)`` wrapped; `MasterKeyError` (``master_key.wrong``) otherwise."""
        ...

    def describe(self) -> str:
        """The provider's kind and a fingerprint of its key (never a secret)."""
        ...


class _RawKeyProvider:
    """A provider holding 32 raw bytes in memory (file and environment)."""

    kind = "raw"

    def __init__(self, master: bytes) -> None:
        if len(master) != KEY_BYTES:
            raise MasterKeyError("master_key.unsafe", f"a master key is exactly {KEY_BYTES} bytes")
        self._master = master
        self.suite = "intl"

    def use_suite(self, suite: str) -> None:
        """Wrap with ``suite``'s AEAD from now on (``intl``: AES-256-GCM, ``sm``: SM4-GCM)."""
        if suite not in ("intl", "sm"):
            raise ValueError(f"unknown suite {suite!r}")
        self.suite = suite

    def _sm4_key(self) -> bytes:
        sm = suite_of("sm")
        return sm.hmac(self._master, _SM4_LABEL)[: sm.aead_key_size]

    def wrap(self, key_id: str, plaintext_key: bytes) -> bytes:
        if self.suite == "sm":
            return _WRAP_SM4 + suite_of("sm").aead_encrypt(self._sm4_key(), plaintext_key, _aad(key_id))
        return _WRAP_V1 + _seal(self._master, plaintext_key, _aad(key_id))

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        if wrapped[:1] not in (_WRAP_V1, _WRAP_SM4):
            raise MasterKeyError("master_key.wrong", f"the key of {key_id!r} is not wrapped by this kind of master key")
        try:
            if wrapped[:1] == _WRAP_SM4:
                return suite_of("sm").aead_decrypt(self._sm4_key(), wrapped[1:], _aad(key_id))
            return _open(self._master, wrapped[1:], _aad(key_id))
        except (InvalidTag, AeadError, ValueError):
            raise MasterKeyError(
                "master_key.wrong",
                f"the master key ({self.describe()}) does not unwrap the "
                f"key of {key_id!r}: it is not the master key this home's keys are wrapped by",
            ) from None

    def describe(self) -> str:
        return f"{self.kind} fp={fingerprint(self._master, self.suite)}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


def default_key_file(home: Path) -> Path:
    """Where `veilbox init` puts the master key when none is configured: beside the home, never inside it."""
    home = home.resolve()
    return home.parent / f"{home.name}.master.key"


def _check_outside(path: Path, home: Path | None) -> None:
    if home is not None:
        p, h = path.resolve(), home.resolve()
        if p == h or p.is_relative_to(h):
            raise MasterKeyError(
                "master_key.unsafe",
                f"the master key file {path} lies inside VEILBOX_HOME "
                f"({home}): a copy of the home would carry its key; keep it outside",
            )


def create_key_file(path: Path, home: Path | None = None) -> Path:
    """Create a new master key file (32 random bytes, mode 0600, never over an existing file)."""
    _check_outside(path, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(KEY_BYTES))
        f.flush()
        os.fsync(f.fileno())
    return path


class FileProvider(_RawKeyProvider):
    """The master key in a file outside the home, readable by its owner only."""

    kind = "file"

    def __init__(self, path: Path, home: Path | None = None) -> None:
        _check_outside(path, home)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise MasterKeyError("master_key.missing", f"no master key file at {path}") from None
        if not stat.S_ISREG(st.st_mode):
            raise MasterKeyError("master_key.unsafe", f"the master key file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise MasterKeyError(
                "master_key.unsafe",
                f"the master key file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); chmod 600 it",
            )
        raw = path.read_bytes()
        if len(raw) != KEY_BYTES:
            raise MasterKeyError("master_key.unsafe", f"the master key file {path} does not hold {KEY_BYTES} bytes")
        super().__init__(raw)
        self.path = path

    def describe(self) -> str:
        return f"file:{self.path.resolve()} fp={fingerprint(self._master, self.suite)}"


class EnvProvider(_RawKeyProvider):
    """The master key in ``VEILBOX_MASTER_KEY`` (base64 of 32 bytes)."""

    kind = "env"

    def __init__(self, value: str) -> None:
        try:
            raw = base64.b64decode(value.strip(), validate=True)
        except ValueError:
            raise MasterKeyError("master_key.unsafe", "VEILBOX_MASTER_KEY is not base64") from None
        if len(raw) != KEY_BYTES:
            raise MasterKeyError("master_key.unsafe", f"VEILBOX_MASTER_KEY must be the base64 of {KEY_BYTES} bytes")
        super().__init__(raw)

    def describe(self) -> str:
        return f"env:VEILBOX_MASTER_KEY fp={fingerprint(self._master, self.suite)}"


_PKCS11_V1 = b"\x02"


class Pkcs11Provider:
    """An AES key in a PKCS#11 token wraps and unwraps (AES-GCM in the token; the key never leaves it).

    ``create=True`` generates the key (256-bit AES, sensitive, not extractable) when the token has none under
    ``key_label``. Each operation opens its own session, so the provider may be shared between threads."""

    def __init__(
        self, module: str, token_label: str, pin: str, key_label: str = "veilbox-master", create: bool = False
    ) -> None:
        try:
            import pkcs11
        except ImportError:
            raise MasterKeyError(
                "master_key.unavailable",
                "VEILBOX_PKCS11_MODULE is set but python-pkcs11 is not installed (pip install 'veilbox[pkcs11]')",
            ) from None
        self._p11 = pkcs11
        self.module, self.token_label, self.key_label = module, token_label, key_label
        self._pin = pin
        try:
            lib = pkcs11.lib(module)
            self._token = lib.get_token(token_label=token_label)
        except Exception as e:
            raise MasterKeyError(
                "master_key.unavailable",
                f"PKCS#11 module {module!r} or token {token_label!r} unusable: {type(e).__name__}",
            ) from None
        with self._session() as s:
            try:
                s.get_key(label=key_label, key_type=pkcs11.KeyType.AES, object_class=pkcs11.ObjectClass.SECRET_KEY)
            except pkcs11.NoSuchKey:
                if not create:
                    raise MasterKeyError(
                        "master_key.missing", f"no AES key labelled {key_label!r} in PKCS#11 token {token_label!r}"
                    ) from None
                s.generate_key(
                    pkcs11.KeyType.AES,
                    256,
                    label=key_label,
                    store=True,
                    template={pkcs11.Attribute.SENSITIVE: True, pkcs11.Attribute.EXTRACTABLE: False},
                )

    def _session(self) -> Any:
        try:
            return self._token.open(user_pin=self._pin, rw=True)
        except Exception as e:
            raise MasterKeyError(
                "master_key.unavailable", f"cannot log in to PKCS#11 token {self.token_label!r}: {type(e).__name__}"
            ) from None

    def _key(self, s: Any) -> Any:
        p = self._p11
        try:
            return s.get_key(label=self.key_label, key_type=p.KeyType.AES, object_class=p.ObjectClass.SECRET_KEY)
        except p.NoSuchKey:
            raise MasterKeyError(
                "master_key.missing", f"no AES key labelled {self.key_label!r} in PKCS#11 token {self.token_label!r}"
            ) from None

    def _params(self, nonce: bytes, key_id: str) -> Any:
        from pkcs11.mechanisms import GCMParams, Mechanism

        return Mechanism.AES_GCM, GCMParams(nonce, _aad(key_id), 128)

    def wrap(self, key_id: str, plaintext_key: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        mech, param = self._params(nonce, key_id)
        with self._session() as s:
            ct = self._key(s).encrypt(plaintext_key, mechanism=mech, mechanism_param=param)
        return _PKCS11_V1 + nonce + bytes(ct)

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        if wrapped[:1] != _PKCS11_V1:
            raise MasterKeyError("master_key.wrong", f"the key of {key_id!r} is not wrapped by a PKCS#11 key")
        nonce, ct = wrapped[1 : 1 + _NONCE], wrapped[1 + _NONCE :]
        mech, param = self._params(nonce, key_id)
        with self._session() as s:
            try:
                return bytes(self._key(s).decrypt(ct, mechanism=mech, mechanism_param=param))
            except self._p11.PKCS11Error:
                raise MasterKeyError(
                    "master_key.wrong", f"the PKCS#11 key {self.key_label!r} does not unwrap the key of {key_id!r}"
                ) from None

    def describe(self) -> str:
        return f"pkcs11:{self.token_label}/{self.key_label}"

    def __repr__(self) -> str:
        return f"<Pkcs11Provider {self.describe()}>"


# --- the keyring -----------------------------------------------------------------------------------------------


def _check_id(object_id: str) -> None:
    if not object_id or len(object_id) > _MAX_ID or ":" not in object_id:
        raise ValueError(f"a key's object id is '<kind>:<name>', at most {_MAX_ID} characters: {object_id!r}")


class Keyring:
    """Wrapped keys in the metadata store, unwrapped on demand by the master-key provider (module docstring)."""

    def __init__(self, engine: Engine, provider: MasterKeyProvider) -> None:
        self.engine = engine
        self.provider = provider

    # data keys

    def new_data_key(self, object_id: str, journal: Journal | None = None) -> bytes:
        """A fresh random 256-bit key for ``object_id``, stored wrapped; `DomainError` ALREADY_EXISTS if it has
        one (a key is never replaced: data encrypted under the old one would be lost)."""
        _check_id(object_id)
        if object_id.startswith(SECRET_PREFIX):
            raise ValueError("secret: ids are the service's own (put_secret)")
        key = secrets.token_bytes(KEY_BYTES)
        self._insert(object_id, key, journal)
        return key

    def data_key(self, object_id: str) -> bytes:
        """``object_id``'s key; `DataKeyDestroyed` if it has none (never created or destroyed)."""
        with self.engine.connect() as conn:
            return self.data_key_in(conn, object_id)

    def data_key_in(self, conn: Connection, object_id: str) -> bytes:
        """`data_key` read in ``conn``'s transaction."""
        row = conn.execute(select(data_keys.c.wrapped).where(data_keys.c.object_id == object_id)).first()
        if row is None:
            raise DataKeyDestroyed(f"no key for {object_id!r}: never created, or destroyed")
        return self.provider.unwrap(object_id, bytes(row[0]))

    def data_key_or_new(self, object_id: str) -> bytes:
        """``object_id``'s key, created on first use (two racing callers get the same key)."""
        try:
            return self.data_key(object_id)
        except DataKeyDestroyed:
            pass
        try:
            return self.new_data_key(object_id)
        except DomainError:
            return self.data_key(object_id)

    def exists(self, object_id: str) -> bool:
        """Whether ``object_id`` has a wrapped key (reads only; unwraps nothing)."""
        with self.engine.connect() as conn:
            return (
                conn.execute(select(data_keys.c.object_id).where(data_keys.c.object_id == object_id)).first()
                is not None
            )

    def destroy(self, object_id: str, journal: Journal | None = None) -> bool:
        """Crypto-shredding: delete ``object_id``'s wrapped key (and with it every copy of its data encrypted
        under it, backups included once their store backups age out). ``journal`` records it in the same
        transaction. Returns whether there was a key."""
        with self.engine.begin() as conn:
            gone = conn.execute(delete(data_keys).where(data_keys.c.object_id == object_id)).rowcount
            if journal is not None:
                journal(conn)
        return bool(gone)

    # the service's own secrets

    def put_secret(self, name: str, value: bytes) -> None:
        """Store the service secret ``name`` wrapped (once; `DomainError` ALREADY_EXISTS if present)."""
        self._insert(SECRET_PREFIX + name, value, None)

    def secret(self, name: str) -> bytes | None:
        """The service secret ``name``, or ``None`` if the store holds none."""
        try:
            return self.data_key(SECRET_PREFIX + name)
        except DataKeyDestroyed:
            return None

    def secret_or_new(self, name: str, make: Callable[[], bytes]) -> bytes:
        """The secret ``name``, created from ``make()`` on first use (racing creators agree on the first)."""
        value = self.secret(name)
        if value is not None:
            return value
        try:
            self.put_secret(name, make())
        except DomainError:
            pass
        value = self.secret(name)
        assert value is not None
        return value

    # rotation and status

    def rewrap_all(self, new_provider: MasterKeyProvider, journal: Journal | None = None) -> int:
        """Rotation: unwrap every key with the current provider and wrap it with ``new_provider``, in one
        transaction (all or none); no data is re-encrypted. Afterwards the old master key is no longer needed.
        Returns how many keys were re-wrapped."""
        now = dt.datetime.now(dt.UTC)
        master = new_provider.describe()
        with self.engine.begin() as conn:
            rows = conn.execute(select(data_keys.c.object_id, data_keys.c.wrapped).with_for_update()).all()
            for object_id, wrapped in rows:
                key = self.provider.unwrap(object_id, bytes(wrapped))
                conn.execute(
                    update(data_keys)
                    .where(data_keys.c.object_id == object_id)
                    .values(wrapped=new_provider.wrap(object_id, key), master=master, wrapped_at=now)
                )
            if journal is not None:
                journal(conn)
        self.provider = new_provider
        return len(rows)

    def status(self) -> dict[str, Any]:
        """The provider and how many keys it wraps, by kind (no secret, no key)."""
        with self.engine.connect() as conn:
            ids = [r[0] for r in conn.execute(select(data_keys.c.object_id))]
            masters = [r[0] for r in conn.execute(select(data_keys.c.master).distinct())]
        kinds: dict[str, int] = {}
        for object_id in ids:
            kind = object_id.split(":", 1)[0]
            kinds[kind] = kinds.get(kind, 0) + 1
        return {
            "provider": self.provider.describe(),
            "wrapped_keys": len(ids),
            "by_kind": dict(sorted(kinds.items())),
            "wrapped_by": sorted(masters),
        }

    def count(self) -> int:
        """How many wrapped keys the store holds."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(data_keys)).scalar_one())

    def _insert(self, object_id: str, key: bytes, journal: Journal | None) -> None:
        now = dt.datetime.now(dt.UTC)
        wrapped = self.provider.wrap(object_id, key)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    data_keys.insert().values(
                        object_id=object_id,
                        wrapped=wrapped,
                        master=self.provider.describe(),
                        created_at=now,
                        wrapped_at=now,
                    )
                )
                if journal is not None:
                    journal(conn)
        except IntegrityError:
            raise DomainError(ALREADY_EXISTS, f"{object_id!r} already has a key") from None
