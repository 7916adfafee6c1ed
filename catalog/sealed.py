"""Files at rest: authenticated encryption of the bytes the service keeps under its home.

Every protected file (a registered dataset's Parquet copy; see docs/crypto.md "Encryption at rest" for the full
list) is one *sealed* file: a header naming the suite and the data key, then the content in chunks, each
encrypted with the suite's AEAD (`cryptosuite.Suite.aead_encrypt`: AES-256-GCM for ``intl``, SM4-GCM for
``sm``). Layout::

    b"VBXSEAL1" | u16 header length | header (JSON: v, suite, cipher, key_id, chunk)
    chunk 0 | chunk 1 | … | last chunk        each: nonce(12) || ciphertext || tag(16)

- every chunk holds ``chunk`` plaintext bytes except the last (which may hold fewer, or none);
- chunk *i*'s associated data is the whole header, *i* (u64) and a final flag (1 on the last chunk only), so a
  reordered, dropped, duplicated or truncated chunk, a header edited to name another suite or key, and a file
  cut at a chunk boundary all fail authentication (`SealedError`), never decrypt to something else;
- the AEAD key is derived from the object's data key (``HMAC(data key, "veilbox/at-rest/v1")`` with the suite's
  hash, cut to the AEAD's key size), so one 256-bit data key serves both suites' ciphers;
- nonces are fresh random 96-bit values (one per MiB chunk: far below the collision bound).

Data keys come from the key service (`DataKeys`: ``data_key(object_id)``, ``new_data_key(object_id)``,
``destroy(object_id)``); the key id in the header is the object id, so a reader needs nothing but the file and
the key service. Destroying the object's data key makes every file sealed under it unreadable for good
(crypto-shredding); rotating the master key re-wraps data keys and leaves these files alone.

Plaintext exists only in the memory of the process that reads it (`open_bytes`, `read_file`), or — for an engine
that must open a path — in an anonymous memory file of that process (`memory_file`: ``memfd``, sealed against
writes, gone with the process), never on a file system.
"""

from __future__ import annotations

import io
import json
import os
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from catalog.durable import atomic_path
from cryptosuite import AeadError, Suite, suite_of

__all__ = [
    "MAGIC",
    "DataKeys",
    "GivenKeys",
    "SealedError",
    "Sealer",
    "is_sealed",
    "key_id_of",
    "memory_file",
    "readable_path",
]

MAGIC = b"VBXSEAL1"
CHUNK = 1 << 20
_NONCE, _TAG = 12, 16
_KDF_LABEL = b"veilbox/at-rest/v1"


class SealedError(ValueError):
    """A sealed file that is malformed, was tampered with, or whose data key is wrong or destroyed."""


class DataKeys(Protocol):
    """The key service as this module uses it (its data keys are 32 random bytes, stored only wrapped)."""

    def data_key(self, object_id: str) -> bytes: ...

    def new_data_key(self, object_id: str) -> bytes: ...

    def destroy(self, object_id: str) -> object: ...


class GivenKeys:
    """A fixed set of data keys (object id -> key) as `DataKeys`, for a process that must only read some files
    (the query worker, the training child): it creates and destroys none. Picklable; never written to disk."""

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        self._keys = dict(keys)

    def data_key(self, object_id: str) -> bytes:
        return self._keys[object_id]

    def new_data_key(self, object_id: str) -> bytes:
        raise LookupError("this process creates no data keys")

    def destroy(self, object_id: str) -> bool:
        raise LookupError("this process destroys no data keys")


def _read_header(f: IO[bytes]) -> tuple[bytes, dict[str, object]]:
    head = f.read(len(MAGIC) + 2)
    if len(head) != len(MAGIC) + 2 or head[:len(MAGIC)] != MAGIC:
        raise SealedError("not a sealed file")
    (n,) = struct.unpack(">H", head[len(MAGIC):])
    body = f.read(n)
    if len(body) != n:
        raise SealedError("sealed file cut short")
    try:
        meta = json.loads(body)
    except ValueError:
        raise SealedError("sealed file header unreadable") from None
    if not isinstance(meta, dict) or meta.get("v") != 1:
        raise SealedError("unknown sealed file version")
    return head + body, meta


def is_sealed(path: Path) -> bool:
    """Whether ``path`` starts like a sealed file (no key needed, nothing decrypted)."""
    try:
        with path.open("rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def key_id_of(path: Path) -> str:
    """The data key's object id named in ``path``'s header."""
    with path.open("rb") as f:
        _, meta = _read_header(f)
    return str(meta["key_id"])


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, 1 if final else 0)


@dataclass(frozen=True)
class Sealer:
    """Seals and opens files under one suite with data keys from ``keys`` (see the module docstring)."""

    suite_name: str
    keys: DataKeys

    @property
    def suite(self) -> Suite:
        return suite_of(self.suite_name)

    def for_files(self, *paths: Path, write: tuple[str, ...] = ()) -> Sealer:
        """A sealer that can open exactly ``paths`` (those sealed) and seal under the object ids ``write`` (their
        keys created here if need be: `key_for`), nothing else: the keys fetched now (`GivenKeys`), for a process
        that works later without the key service (the training child)."""
        ids = {key_id_of(p) for p in paths if is_sealed(p)}
        given = {i: self.keys.data_key(i) for i in ids} | {i: self.key_for(i) for i in write}
        return Sealer(self.suite_name, GivenKeys(given))

    def key_for(self, object_id: str) -> bytes:
        """``object_id``'s data key, created on first use (a retried job seals under the key of its first try)."""
        try:
            return self.keys.data_key(object_id)
        except LookupError:
            pass
        try:
            return self.keys.new_data_key(object_id)
        except Exception:  # created meanwhile by a racing caller (ALREADY_EXISTS): read it
            return self.keys.data_key(object_id)

    def _aead_key(self, suite: Suite, data_key: bytes) -> bytes:
        return suite.hmac(data_key, _KDF_LABEL)[: suite.aead_key_size]

    # --- writing -------------------------------------------------------------------------------------------
    def seal_chunks(self, object_id: str, data: bytes, *, new_key: bool = False) -> Iterator[bytes]:
        """The sealed form of ``data`` under ``object_id``'s data key (a fresh one when ``new_key``), in parts."""
        suite = self.suite
        data_key = self.keys.new_data_key(object_id) if new_key else self.keys.data_key(object_id)
        key = self._aead_key(suite, data_key)
        body = json.dumps({"v": 1, "suite": suite.name, "cipher": suite.aead_name, "key_id": object_id,
                           "chunk": CHUNK}, sort_keys=True, separators=(",", ":")).encode()
        header = MAGIC + struct.pack(">H", len(body)) + body
        yield header
        view = memoryview(data)
        count = max(1, -(-len(view) // CHUNK))
        for i in range(count):
            part = bytes(view[i * CHUNK:(i + 1) * CHUNK])
            yield suite.aead_encrypt(key, part, _aad(header, i, i == count - 1))

    def seal_bytes(self, object_id: str, data: bytes, *, new_key: bool = False) -> bytes:
        return b"".join(self.seal_chunks(object_id, data, new_key=new_key))

    def write_file(self, final: Path, object_id: str, data: bytes, *, new_key: bool = False) -> None:
        """Seal ``data`` into ``final`` durably and atomically (`catalog.durable.atomic_path`)."""
        with atomic_path(final) as tmp:
            self.write_temp(tmp, object_id, data, new_key=new_key)

    def write_temp(self, path: Path, object_id: str, data: bytes, *, new_key: bool = False) -> None:
        """Seal ``data`` into ``path`` (created 0600, fsynced); the caller renames it into place."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            for part in self.seal_chunks(object_id, data, new_key=new_key):
                f.write(part)
            f.flush()
            os.fsync(f.fileno())

    # --- reading -------------------------------------------------------------------------------------------
    def plain_chunks(self, f: IO[bytes]) -> Iterator[bytes]:
        """The plaintext of the sealed stream ``f``, chunk by chunk, each yielded only once it authenticated; a
        file cut short, reordered or altered raises `SealedError` at the chunk where it differs (or at its end)."""
        header, meta = _read_header(f)
        if meta.get("suite") != self.suite_name:
            raise SealedError("sealed under another suite")
        suite = self.suite
        chunk = meta.get("chunk")
        if not isinstance(chunk, int) or chunk <= 0:
            raise SealedError("sealed file header unreadable")
        try:
            data_key = self.keys.data_key(str(meta["key_id"]))
        except (KeyError, LookupError) as e:
            raise SealedError("the data key of this file is not available") from e
        key = self._aead_key(suite, data_key)
        size = chunk + _NONCE + _TAG
        i = 0
        block = f.read(size)
        while True:
            nxt = f.read(size)
            final = not nxt
            try:
                plain = suite.aead_decrypt(key, block, _aad(header, i, final))
            except AeadError:
                raise SealedError("sealed file failed authentication") from None
            yield plain
            if final:
                return
            block, i = nxt, i + 1

    def open_stream(self, f: IO[bytes]) -> bytes:
        out = io.BytesIO()
        for part in self.plain_chunks(f):
            out.write(part)
        return out.getvalue()

    def open_bytes(self, data: bytes) -> bytes:
        return self.open_stream(io.BytesIO(data))

    def read_file(self, path: Path) -> bytes:
        """``path``'s plaintext, in this process's memory only."""
        with path.open("rb") as f:
            return self.open_stream(f)


def memory_file(name: str, data: bytes) -> int:
    """An anonymous in-memory file (``memfd``) holding ``data``, sealed against any further write, grow or
    shrink; returns its descriptor (readable as ``/proc/self/fd/<fd>``; it vanishes when closed or when the
    process exits). Linux only: ``OSError`` elsewhere."""
    import fcntl

    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def readable_path(path: Path, sealer: Sealer | None) -> Iterator[Path]:
    """A path an engine can open for ``path``'s plaintext while the block runs: ``path`` itself when it is not
    sealed, else an anonymous memory file of this process (`memory_file`, ``/proc/self/fd/<fd>``) closed when the
    block ends. A sealed file without ``sealer`` is `SealedError`."""
    if not is_sealed(path):
        yield path
        return
    if sealer is None:
        raise SealedError("a sealed file and no key service")
    fd = memory_file(f"veilbox-{path.stem}", sealer.read_file(path))
    try:
        yield Path(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
