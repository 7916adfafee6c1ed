"""Shared storage: where registered data, model weights and side files live, behind one small interface.

A `Storage` holds *objects* under relative *keys* (``tax-0123456789abcdef.parquet``, ``job_1/model.safetensors``):
POSIX-style names without ``..``, empty parts or a leading dot (names starting with a dot are the temporary files
of `catalog.durable`). Metadata rows store keys, never locations, so a home's metadata is independent of where its
storage root is mounted: a home (or its storage root) copied or moved to another directory keeps working.

`LocalStorage` is the implementation over a directory: the storage root (``VEILBOX_STORAGE_ROOT``, default the
home itself, so existing homes keep their ``data/`` and ``models/``). Several hosts may mount the same root (a
network file system): writes are atomic renames of fsynced temporary files named with their writer's host and
process (`catalog.durable`), so a reader on any host sees a whole object or none. What the interface asks of an
object store (docs/deploy.md, "Storage root"):

- ``write_bytes`` / ``write_stream`` / ``staged`` / ``put_file``: an object appears whole or not at all, and is
  durable when the call returns (object stores: one PUT, or a multipart upload completed only at the end);
  ``put_file`` takes a finished local file a writer built at ``temp_file`` (an ingest copy whose key depends on its
  fingerprint, so it is named only once written) and consumes it;
- ``open`` / ``local_path``: read-after-write consistency for a key once written; ``local_path`` gives an engine
  that must open a path (DuckDB, Spark, pyarrow) a file — for an object store a private staged copy, removed when
  the block ends;
- ``exists``, ``size``, ``delete``, ``list`` (by key prefix).

Fingerprints are verified at read (`verify_file`): the recorded fingerprint of a registered copy is compared with
the stored bytes before an engine gets them, and a difference fails closed (`IntegrityFailure`: ``UNAVAILABLE``
with reason ``storage.fingerprint_mismatch``, or ``storage.missing``). A plain file is hashed with the
fingerprint's own algorithm. A sealed file (`catalog.sealed`) must be sealed under the data key of the object the
record names (``key_prefix``: one object's sealed file put in place of another's is refused), and — given the
key service (``sealer``: the gateway always passes it) — is decrypted chunk by chunk, every chunk authenticated by
its AEAD (a changed, cut or reordered byte fails there), and the plaintext's digest compared with the fingerprint
(which is of the plaintext). Without the key service only the header is checked here, and the AEAD still refuses a
changed byte when the reader decrypts. A file verified once is not checked again in this process while its
identity (device, inode, size, modification and change times) stays the same; any write to it changes its change
time, which user space cannot set back.

Written only through this interface: registered datasets' copies (``data/``: `catalog.registry.register`, built at
``temp_file`` and put by ``put_file`` inside the registering transaction), trained models' weights and cards and
code jobs' model outputs (``models/<job id>/``: `sandbox.train.runner.train`, `sandbox.jobs.code`). Model weights
are verified at read like copies (`gateway.services.storage.check_model`, exact data key ``model:<job id>``).

The dataset registry resolves its rows' keys against the dataset area bound to its store engine (`bind_data_area`,
done by `gateway.context.open_context`, or by the first registration through that engine).
"""

from __future__ import annotations

import os
import shutil
import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Protocol, cast, runtime_checkable

from sqlalchemy import Engine

from catalog.durable import atomic_path, commit_temp, is_temp_name, temp_path
from catalog.errors import UNAVAILABLE, DomainError
from catalog.fingerprint import HashAlg, file_fingerprint, hasher
from catalog.sealed import SealedError, Sealer, is_sealed, key_id_of

__all__ = [
    "FINGERPRINT_MISMATCH",
    "MISSING",
    "IntegrityFailure",
    "LocalStorage",
    "Storage",
    "bind_data_area",
    "check_key",
    "data_area",
    "forget_verified",
    "resolve_key",
    "stored_key",
    "verify_file",
]

FINGERPRINT_MISMATCH = "storage.fingerprint_mismatch"
#: Where a key resolves when its store has no dataset area bound (`resolve_key`): a directory that does not exist.
UNBOUND = Path("/nonexistent/veilbox-storage-area-not-bound")
MISSING = "storage.missing"


def check_key(key: str) -> str:
    """``key`` if it is a valid object key (relative, POSIX separators, no ``..``, empty or dot-led part)."""
    parts = key.split("/")
    if (
        not key
        or key.startswith("/")
        or "\\" in key
        or "\x00" in key
        or any(p in ("", ".", "..") or p.startswith(".") for p in parts)
    ):
        raise ValueError(f"not a storage key: {key!r}")
    return key


@runtime_checkable
class Storage(Protocol):
    """Objects under relative keys (see the module docstring for what each call promises)."""

    def write_bytes(self, key: str, data: bytes) -> None: ...

    def write_stream(self, key: str, chunks: Iterable[bytes]) -> None: ...

    def staged(self, key: str) -> AbstractContextManager[Path]: ...

    def temp_file(self, key: str, stem: str | None = None) -> Path: ...

    def put_file(self, key: str, src: Path) -> None: ...

    def open(self, key: str) -> IO[bytes]: ...

    def local_path(self, key: str) -> AbstractContextManager[Path]: ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int: ...

    def delete(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> list[str]: ...


class LocalStorage:
    """`Storage` over a directory (``root``), possibly a network file system several hosts mount."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalStorage) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    def area(self, prefix: str) -> LocalStorage:
        """The storage under ``<prefix>/`` (``data``, ``models``) as a storage of its own."""
        return LocalStorage(self.root / check_key(prefix))

    def path_of(self, key: str) -> Path:
        """Where ``key`` lives on this host's mount."""
        return self.root / check_key(key)

    def key_of(self, path: Path) -> str | None:
        """The key of ``path`` when it lies under the root (lexically), else ``None``."""
        try:
            rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(self.root))
        except ValueError:
            return None
        try:
            return check_key(rel.as_posix())
        except ValueError:
            return None

    # --- writing -------------------------------------------------------------------------------------------
    def staged(self, key: str) -> AbstractContextManager[Path]:
        """A temporary path to write ``key`` to; renamed into place, durably, when the block ends without an
        exception (`catalog.durable.atomic_path`), removed otherwise."""
        return atomic_path(self.path_of(key))

    def temp_file(self, key: str, stem: str | None = None) -> Path:
        """A fresh local path to build ``key``'s bytes at before `put_file`: beside the object (same file system,
        so the put is a rename), under a host-scoped temporary name (`catalog.durable.temp_path`, ``stem`` in
        place of the key's name) that a crashed writer's sweep removes."""
        final = self.path_of(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        return temp_path(final, stem)

    def put_file(self, key: str, src: Path) -> None:
        """Move the finished local file ``src`` under ``key``, atomically and durably; ``src`` is gone afterwards.
        Beside the object (`temp_file`) it is fsynced and renamed and the directory fsynced
        (`catalog.durable.commit_temp`); elsewhere its bytes are copied through `staged`, then ``src`` removed."""
        final = self.path_of(key)
        src = Path(src)
        if os.path.abspath(src.parent) == os.path.abspath(final.parent):
            commit_temp(src, final)
            return
        with self.staged(key) as tmp:
            shutil.copyfile(src, tmp)
            os.chmod(tmp, 0o600)
        src.unlink(missing_ok=True)

    def write_stream(self, key: str, chunks: Iterable[bytes]) -> None:
        with self.staged(key) as tmp:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())

    def write_bytes(self, key: str, data: bytes) -> None:
        self.write_stream(key, (data,))

    # --- reading -------------------------------------------------------------------------------------------
    def open(self, key: str) -> IO[bytes]:
        return self.path_of(key).open("rb")

    @contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        """The object's own file (a directory needs no staged copy)."""
        path = self.path_of(key)
        if not path.is_file():
            raise FileNotFoundError(key)
        yield path

    def exists(self, key: str) -> bool:
        return self.path_of(key).is_file()

    def size(self, key: str) -> int:
        return self.path_of(key).stat().st_size

    def delete(self, key: str) -> bool:
        try:
            self.path_of(key).unlink()
        except FileNotFoundError:
            return False
        return True

    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix``, sorted; temporary files and symlinks are not objects."""
        out: list[str] = []
        if not self.root.is_dir():
            return out
        for d, dirs, files in os.walk(self.root):
            dirs[:] = [x for x in dirs if not x.startswith(".")]
            for n in files:
                p = Path(d) / n
                if n.startswith(".") or is_temp_name(n) or p.is_symlink():
                    continue
                key = p.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    out.append(key)
        return sorted(out)


# --- the dataset area of a store engine ------------------------------------------------------------------------

_AREAS: weakref.WeakKeyDictionary[Engine, LocalStorage] = weakref.WeakKeyDictionary()
_AREAS_LOCK = threading.Lock()


def bind_data_area(engine: Engine, area: LocalStorage) -> None:
    """Resolve the dataset keys of ``engine``'s store against ``area`` (the storage root's ``data/``)."""
    with _AREAS_LOCK:
        _AREAS[engine] = area


def data_area(engine: Engine) -> LocalStorage | None:
    with _AREAS_LOCK:
        return _AREAS.get(engine)


def stored_key(engine: Engine, data_dir: Path, final: Path) -> str:
    """What a dataset row records for its copy at ``final``: its key in the engine's dataset area (bound to
    ``data_dir`` now when it has none yet), or — a copy outside that area — its absolute path."""
    with _AREAS_LOCK:
        area = _AREAS.setdefault(engine, LocalStorage(data_dir))
    key = area.key_of(final)
    return key if key is not None else str(final)


def resolve_key(engine: Engine, stored: str) -> Path:
    """Where a dataset row's stored key (or the absolute path an older home recorded) lives on this host.

    An absolute path whose file is gone but whose name is in the dataset area (a home moved or copied since it
    recorded absolute paths: ``<old home>/data/<name>``) resolves into the area; either way the copy's fingerprint is
    verified before it is read (`verify_file`). A store engine with no dataset area bound (opened without its home,
    for its metadata only) gets the key under `UNBOUND`: a read of it fails (``storage.missing``), never reads
    another file."""
    area = data_area(engine)
    p = Path(stored)
    if p.is_absolute():
        if area is not None and p.parent.name == "data" and not p.exists():
            moved = area.root / p.name
            if moved.exists():
                return moved
        return p
    if area is None:  # a store opened without its home (metadata only): a place no file is found at
        return UNBOUND / stored
    return area.path_of(stored)


# --- fingerprints verified at read -------------------------------------------------------------------------------


class IntegrityFailure(DomainError):
    """A stored file that is missing or differs from its recorded fingerprint: nothing is read from it."""

    def __init__(self, reason: str, key: str) -> None:
        super().__init__(UNAVAILABLE, "a stored file failed its integrity check", [{"reason": reason}])
        self.reason = reason
        self.key = key


_Identity = tuple[int, int, int, int, int]
_VERIFIED: dict[str, tuple[_Identity, str, str | None, bool]] = {}
_VERIFIED_LOCK = threading.Lock()


def _identity(st: os.stat_result) -> _Identity:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _plain_digest(path: Path, alg: HashAlg, sealer: Sealer) -> str:
    """The digest of a sealed file's plaintext, decrypted chunk by chunk (never held whole)."""
    h = hasher(alg)
    with path.open("rb") as f:
        for part in sealer.plain_chunks(f):
            h.update(part)
    return f"{alg}:{h.finalize().hex()}"


def verify_file(
    path: Path,
    fingerprint: str,
    *,
    key: str = "",
    key_prefix: str | None = None,
    key_id: str | None = None,
    sealer: Sealer | None = None,
) -> None:
    """Check ``path`` against its recorded ``fingerprint`` (``"<alg>:<hex>"`` of the plain bytes) before it is
    read; `IntegrityFailure` when it is missing or differs (see the module docstring). A sealed file must be sealed
    under a data key whose id starts with ``key_prefix`` (``dataset:<name>-``), or is exactly ``key_id``
    (``model:<job id>``); with ``sealer`` it is also decrypted (every chunk authenticated) and its plaintext
    digest compared."""
    name = key or path.name
    try:
        before = _identity(os.stat(path))
    except OSError:
        raise IntegrityFailure(MISSING, name) from None
    cache_key = str(path)
    remembered = (before, fingerprint, f"{key_prefix}|{key_id}", sealer is not None)
    with _VERIFIED_LOCK:
        if _VERIFIED.get(cache_key) == remembered:
            return
    alg = fingerprint.partition(":")[0]
    ok = False
    try:
        if alg not in ("sha256", "sm3"):
            ok = False
        elif is_sealed(path):
            sealed_under = key_id_of(path)
            ok = (key_prefix is None or sealed_under.startswith(key_prefix)) and key_id in (None, sealed_under)
            if ok and sealer is not None:
                ok = _plain_digest(path, cast(HashAlg, alg), sealer) == fingerprint
        else:
            ok = file_fingerprint(path, cast(HashAlg, alg)) == fingerprint
        after = _identity(os.stat(path))
    except (OSError, SealedError, KeyError, ValueError):
        raise IntegrityFailure(MISSING if not path.exists() else FINGERPRINT_MISMATCH, name) from None
    if not ok:
        with _VERIFIED_LOCK:
            _VERIFIED.pop(cache_key, None)
        raise IntegrityFailure(FINGERPRINT_MISMATCH, name)
    if after == before:  # unchanged while it was checked: remember it
        with _VERIFIED_LOCK:
            _VERIFIED[cache_key] = remembered


def forget_verified() -> None:
    """Drop the memory of verified files (tests; an operator who restored files with forged times)."""
    with _VERIFIED_LOCK:
        _VERIFIED.clear()
