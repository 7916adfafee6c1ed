"""The service side of PSI and anonymous verification: keys, per-dataset-version setups, bucket verdicts.

Keys: one 32-byte master secret, created once and never served: in the service, stored wrapped by the master key
(``secret:psi-master`` in `catalog.keyring`); a `SetupStore` without a keyring keeps it in
``<keys dir>/psi_master.key`` (0600). Each setup
uses its own scalar ``b = HKDF(master, purpose | fingerprint | column)``: ``size`` (psi_size), ``members``
(psi_members) and ``anon`` (anonymous checks) never share a key, so what a bank learns under one protocol
(members' evaluations, one anonymous evaluation per call) is useless against another's set.

Setups (`SetupStore`): per (purpose, dataset fingerprint, column, key id) the service evaluates
``x(b·H(id))`` once for every distinct non-null id of the column (read through the dataset's locked worker) and
caches the result under ``<work dir>/psi/<digest>/`` (large sets: one worker process per core) — a new dataset
version has a new fingerprint, hence a new setup; the key id is a digest of the master, so a rotated master
never reuses a stale cache (`SetupStore.cached` tells, without computing, whether a version's PSI setups
exist). The PSI set is padded with random dummies to its size class (`mpc.psi.padded_size`). Processes sharing
the home compute a setup once: each computation holds an exclusive file lock (``<work dir>/psi/<digest>.lock``)
and reads the disk copy first, so no two processes ever serve two versions of a set (two versions would differ
only in their dummies, and their intersection would reveal the real size the padding hides). The
anonymous setup keeps, per subject, its canonical spelling, evaluation and bucket hash, and the number of bucket
bits for the minimum bucket size ``k`` (`mpc.psi.choose_bits`).

Sealed at rest: given the home's sealer (`catalog.sealed.Sealer`, the service passes `gateway.sealing`'s), every
file of a setup — ``set.bin``, ``meta.json``, ``evaluated.bin``, ``subjects.json`` and the psi_size tables — is
written sealed under the setup's own data key ``psi:<digest>`` and opened in memory only (a file sealed under
another setup's key — put in this one's place — is refused, `catalog.sealed.SealedError`); a plain file written
before sealing is read once and re-sealed in place under the setup's lock (same content, so the same padded set).
A copy of the home without its master key holds no setup's ids or evaluations. Without a sealer (tests of the
setups alone) the files are plain.

psi_size tables: the bank's double-blinded set for a setup is stored per (bank, setup) under
``<work dir>/psi/<digest>/size-<bank digest>-<set digest>.npy`` (64-bit tags only).

Bucket verdicts (`bucket_verdicts`) run one canonical statement on the locked worker::

    SELECT CAST(<subject> AS VARCHAR), COUNT(*) FILTER (WHERE <condition>) FROM <dataset>
    WHERE CAST(<subject> AS VARCHAR) IN (<the bucket's subjects>) GROUP BY 1

so every subject of the bucket is evaluated by the same work whatever the bank asked about.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from catalog.columns import Kind, Role
from catalog.durable import atomic_write_bytes
from catalog.errors import POLICY_DENIED, DomainError, invalid
from catalog.keyring import SECRET_PREFIX, Keyring
from catalog.registry import Dataset
from catalog.sealed import SealedError, Sealer, is_sealed, key_id_of
from mpc import psi
from mpc.psi import group
from sandbox.engine.hardening import quote_ident
from sandbox.engine.worker import ExecRequest
from sandbox.verify import Executor, VettedPredicate

MASTER_KEY = "psi_master.key"  # the secret as a file: a store without a keyring (tests of the setups alone)
KEYRING_SECRET = "psi-master"  # noqa: S105 - the keyring's name of the secret, not a secret
PURPOSES = {"size": psi.SIZE, "members": psi.MEMBERS, "anon": psi.ANON}
#: Buckets whose decoded points an anonymous setup keeps (decoding is about a third of an answer's work).
POINT_CACHE_BUCKETS = 256


def _processes() -> int:
    return max(1, os.cpu_count() or 1)


def master_key(keys_dir: Path) -> bytes:
    """The PSI master secret (created with mode 0600 on first use)."""
    path = keys_dir / MASTER_KEY
    if not path.exists():  # written whole under a temporary name, then linked: a reader never sees it partial
        keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = keys_dir / f".{MASTER_KEY}.{os.getpid()}.{os.urandom(8).hex()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(32))
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)  # the first process's key wins; the others read it
            except FileExistsError:
                pass
        finally:
            tmp.unlink()
    return path.read_bytes()


def read_ids(worker: Executor, ds: Dataset, column: str) -> list[str]:
    """Every distinct non-null value of ``column`` as text (integers in their canonical decimal spelling)."""
    col = quote_ident(column)
    rows = worker.execute(ExecRequest(
        sql=f"SELECT DISTINCT CAST({col} AS VARCHAR) FROM {quote_ident(ds.name)} WHERE {col} IS NOT NULL",
        params={}, max_rows=max(ds.rows, 1), ncols=1))
    return sorted(str(r[0]) for r in rows)


@dataclass
class PsiSetup:
    """``T`` for psi_size / psi_members."""

    digest: str
    directory: Path
    key: int
    elements: list[bytes]
    ids: int  # distinct ids before padding (the service's own knowledge)


@dataclass
class AnonSetup:
    """The anonymous-check setup of one dataset version and ``k``: every subject's evaluation and bucket hash."""

    digest: str
    key: int
    subjects: list[str]
    evaluated: list[bytes]
    hashes: np.ndarray
    bits: int | None  # None: fewer than k subjects
    k: int
    _points: OrderedDict[int, list[Any]] = field(default_factory=OrderedDict)
    _points_lock: threading.Lock = field(default_factory=threading.Lock)

    def points(self, index: int, members: Sequence[int]) -> list[Any]:
        """The bucket's evaluations decoded once and kept (the most recent `POINT_CACHE_BUCKETS` buckets)."""
        with self._points_lock:
            hit = self._points.get(index)
            if hit is not None:
                self._points.move_to_end(index)
                return hit
        pts = [group.decode(self.evaluated[i]) for i in members]
        with self._points_lock:
            self._points[index] = pts
            while len(self._points) > POINT_CACHE_BUCKETS:
                self._points.popitem(last=False)
        return pts

    def bucket(self, index: int) -> list[int]:
        """Indices of the subjects in bucket ``index``."""
        if self.bits is None:
            return []
        if self.bits == 0:
            return list(range(len(self.subjects)))
        return np.nonzero((self.hashes >> np.uint64(64 - self.bits)) == np.uint64(index))[0].tolist()


class SetupStore:
    """Computes each setup once per dataset version and key, caches it on disk and in memory."""

    def __init__(self, work_dir: Path, keys_dir: Path, keyring: Keyring | None = None,
                 sealer: Sealer | None = None) -> None:
        self.root = work_dir / "psi"
        self.sealer = sealer  # the home's: setups are sealed at rest under psi:<digest> (module docstring)
        self.keys_dir = keys_dir
        self.keyring = keyring  # the service's: the master secret is stored wrapped (secret:psi-master)
        self._lock = threading.Lock()
        self._psi: dict[str, PsiSetup] = {}
        self._anon: dict[str, AnonSetup] = {}

    def _master(self) -> bytes:
        if self.keyring is None:
            return master_key(self.keys_dir)
        return self.keyring.secret_or_new(KEYRING_SECRET, lambda: os.urandom(32))

    def _has_master(self) -> bool:
        if self.keyring is None:
            return (self.keys_dir / MASTER_KEY).exists()
        return self.keyring.exists(SECRET_PREFIX + KEYRING_SECRET)

    @contextmanager
    def _exclusive(self, digest: str) -> Iterator[None]:
        """Hold ``<root>/<digest>.lock`` exclusively: one process at a time computes or loads this setup."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{digest}.lock", "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _write(self, path: Path, digest: str, data: bytes) -> None:
        """``data`` into ``path`` atomically: sealed under ``psi:<digest>`` when the store has a sealer."""
        if self.sealer is None:
            atomic_write_bytes(path, data)
            return
        object_id = f"psi:{digest}"
        self.sealer.key_for(object_id)
        self.sealer.write_file(path, object_id, data)

    def _read(self, path: Path, digest: str) -> bytes:
        """``path``'s content in memory; a plain file met with a sealer is re-sealed in place (caller holds the
        setup's lock, or the file is written once and never changes)."""
        if self.sealer is None:
            return path.read_bytes()
        if is_sealed(path):
            if key_id_of(path) != f"psi:{digest}":  # another setup's file put in its place: refused, not read
                raise SealedError("a setup file sealed under another setup's key")
            return self.sealer.read_file(path)
        data = path.read_bytes()
        self._write(path, digest, data)
        return data

    def _key(self, purpose: str, ds: Dataset, column: str) -> tuple[int, str]:
        master = self._master()
        key_id = hashlib.sha256(b"veilbox-psi-key-id|" + master).hexdigest()[:16]
        label = f"{purpose}|{ds.fingerprint}|{column}".encode()
        digest = hashlib.sha256(label + b"|" + key_id.encode()).hexdigest()[:32]
        return group.derive_key(master, label), digest

    def psi(self, worker: Executor, ds: Dataset, purpose: str) -> PsiSetup:
        """The padded set ``T`` of ``ds``'s id column under ``purpose``'s key (``size`` or ``members``)."""
        id_columns = ds.columns_with(Role.ID)
        if not id_columns:
            raise DomainError(POLICY_DENIED, "the dataset has no id column: it has no PSI form")
        column = id_columns[0]
        key, digest = self._key(purpose, ds, column)
        with self._lock:
            hit = self._psi.get(digest)
            if hit is not None:
                return hit
            directory = self.root / digest
            path = directory / "set.bin"
            meta = directory / "meta.json"
            with self._exclusive(digest):  # another process may be computing it: wait, then read its copy
                if path.exists() and meta.exists():
                    elements = group.split(self._read(path, digest))
                    ids = int(json.loads(self._read(meta, digest))["ids"])
                else:
                    domain = PURPOSES[purpose]
                    ids_list = read_ids(worker, ds, column)
                    elements = psi.server_set(key, psi.evaluate_ids(key, ids_list, domain, _processes()), domain)
                    ids = len(ids_list)
                    directory.mkdir(parents=True, exist_ok=True)
                    self._write(path, digest, group.join(elements))  # set first: meta.json marks it complete
                    meta_json = {"ids": ids, "purpose": purpose, "fingerprint": ds.fingerprint}
                    self._write(meta, digest, json.dumps(meta_json).encode())
            setup = PsiSetup(digest, directory, key, elements, ids)
            self._psi[digest] = setup
            return setup

    def anon(self, worker: Executor, ds: Dataset, column: str, k: int) -> AnonSetup:
        """The anonymous setup of ``column`` with buckets of at least ``k`` subjects."""
        key, digest = self._key("anon", ds, column)
        with self._lock:
            hit = self._anon.get(f"{digest}|{k}")
            if hit is not None:
                return hit
            directory = self.root / digest
            with self._exclusive(digest):  # deterministic, but computed once across processes all the same
                if (directory / "subjects.json").exists():
                    subjects = json.loads(self._read(directory / "subjects.json", digest))
                    evaluated = group.split(self._read(directory / "evaluated.bin", digest))
                else:
                    subjects = read_ids(worker, ds, column)
                    evaluated = psi.evaluate_ids(key, subjects, psi.ANON, _processes())
                    directory.mkdir(parents=True, exist_ok=True)
                    self._write(directory / "evaluated.bin", digest, group.join(evaluated))  # subjects.json last
                    self._write(directory / "subjects.json", digest, json.dumps(subjects).encode())
            hashes = psi.bucket_hashes(subjects)
            setup = AnonSetup(digest, key, subjects, evaluated, hashes, psi.choose_bits(hashes, k), k)
            self._anon[f"{digest}|{k}"] = setup
            return setup

    def cached(self, ds: Dataset) -> dict[str, bool]:
        """Whether the PSI setups (``size``, ``members``) of the dataset's current version are computed (on disk
        or in memory). Reads only: creates no key and computes nothing (the owner's dataset page)."""
        id_columns = ds.columns_with(Role.ID)
        if not id_columns or not self._has_master():
            return {"size": False, "members": False}
        out = {}
        for purpose in ("size", "members"):
            _key, digest = self._key(purpose, ds, id_columns[0])
            out[purpose] = digest in self._psi or (self.root / digest / "set.bin").exists()
        return out

    # --- psi_size tables ---------------------------------------------------------------------------------------

    def _table_path(self, setup: PsiSetup, bank: str, table_id: str) -> Path:
        bank_digest = hashlib.sha256(b"veilbox-psi-bank|" + bank.encode()).hexdigest()[:16]
        return setup.directory / f"size-{bank_digest}-{table_id}.npy"

    def store_table(self, setup: PsiSetup, bank: str, returned: Sequence[bytes]) -> str:
        """Keep a bank's double-blinded set as a psi_size table; returns its id (the setup_id the bank cites)."""
        table = psi.size_table(setup.elements, returned)
        table_id = hashlib.sha256(table.tobytes()).hexdigest()[:32]
        path = self._table_path(setup, bank, table_id)
        if not path.exists():
            buf = io.BytesIO()
            np.save(buf, table)
            self._write(path, setup.digest, buf.getvalue())
        return table_id

    def table(self, setup: PsiSetup, bank: str, table_id: str) -> np.ndarray:
        """The bank's stored psi_size table; ``INVALID_REQUEST`` if it is not this bank's for this version."""
        if len(table_id) != 32 or any(c not in "0123456789abcdef" for c in table_id):
            raise invalid("setup_id is not a setup of this dataset version",
                          [{"field": "setup_id", "problem": "unknown"}])
        path = self._table_path(setup, bank, table_id)
        if not path.exists():
            raise invalid("setup_id is not a setup of this dataset version for you (a new dataset version needs a "
                          "new setup)", [{"field": "setup_id", "problem": "unknown"}])
        return np.load(io.BytesIO(self._read(path, setup.digest)))  # a table is written once, never changed


def bucket_sql(vetted: VettedPredicate) -> str:
    """The bucket's statement; the subject column is compared in its own type (integer columns: the bucket's
    decimal spellings cast to BIGINT), so the scan does not cast every row."""
    col = quote_ident(vetted.subject_column)
    wanted = "SELECT UNNEST(string_split($subjects, ','))"
    if vetted.subject_kind is Kind.INTEGER:
        wanted = f"SELECT TRY_CAST(s AS BIGINT) FROM ({wanted}) AS t(s)"
    return (f"SELECT CAST({col} AS VARCHAR), COUNT(*) FILTER (WHERE {vetted.condition_sql}) "
            f"FROM {quote_ident(vetted.dataset)} WHERE {col} IN ({wanted}) GROUP BY 1")


def bucket_verdicts(worker: Executor, vetted: VettedPredicate, subjects: Sequence[str],
                    bound: dict[str, str]) -> list[bool]:
    """The product's verdict for every subject of a bucket (one statement, the same work for any subject)."""
    if any("," in s for s in subjects):
        raise DomainError("INVALID_REQUEST", "a subject of this dataset cannot be bucketed")
    rows = worker.execute(ExecRequest(sql=bucket_sql(vetted), params={**bound, "subjects": ",".join(subjects)},
                                      max_rows=max(len(subjects), 1), ncols=2))
    passed = {str(key) for key, count in rows if int(count or 0) > 0}
    return [s in passed for s in subjects]
