"""The dataset registry: atomic registration, lookup, listing.

Registration is atomic: the Parquet copy is written to a temporary file, the metadata row is inserted in a
transaction, and the fsynced copy is put under its key inside that transaction, before it commits
(`catalog.storage.Storage.put_file`: on a local storage root, renamed into place and its directory fsynced); on
any failure the temporary file is removed and no row remains. A source changed or truncated between its
fingerprint and the end of the copy is refused (`catalog.ingest.source_changed`).

Owners register only their own files. ``import_roots`` are the directories *this owner* may read (the gateway
passes ``<import root>/<owner>/`` for each configured root: `gateway.settings.Settings.owner_import_dirs`); any
other path is refused exactly like a missing file (`catalog.ingest.resolve_source`). Content already registered
by another owner is refused too, ``POLICY_DENIED`` with reason ``dataset.content_registered_by_another_owner``:
the fingerprint of the source file's bytes and of the ingested copy are compared with both fingerprints of every
other owner's datasets, in the inserting transaction (``BEGIN IMMEDIATE`` on SQLite: two owners racing with the
same bytes cannot both win). The refusal names no dataset, owner or path. The same owner may register the same
content under several names. Known limit: only copies whose source bytes or ingested Parquet copy are identical
are recognised (an edited copy, or one declared with other bounds *and* re-encoded, has other fingerprints);
keeping owners out of each other's directories is the file system's job.

A row records its copy by *key* (its name in the storage root's ``data/``: `catalog.storage`), not by location;
`Dataset.path` is where that key lives on this host (`catalog.storage.resolve_key`), so a home whose storage root is
mounted elsewhere, or copied to another directory, keeps working. Rows an older home wrote with absolute paths
are read as they are. `verify_copy` checks a copy against its recorded fingerprint before it is read.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError

from catalog import _tables as t
from catalog.columns import ColumnInfo, DatasetSpec, Grade, Role
from catalog.errors import ALREADY_EXISTS, INVALID_REQUEST, POLICY_DENIED, DomainError
from catalog.fingerprint import HashAlg, file_fingerprint
from catalog.ingest import IngestReport, ingest, resolve_source, source_changed, source_identity
from catalog.sealed import Sealer
from catalog.storage import LocalStorage, Storage, resolve_key, stored_key, verify_file

REGISTERED, WITHDRAWN = "registered", "withdrawn"


@dataclass(frozen=True)
class Dataset:
    """A registered dataset as the rest of the system sees it."""

    name: str
    owner: str
    description: str
    grade: Grade
    personal: bool
    sensitive: bool
    columns: dict[str, ColumnInfo]
    max_rows_per_unit: int
    fingerprint: str
    rows: int
    bytes: int
    path: Path
    ingest_report: dict[str, Any]
    created_at: dt.datetime
    state: str = "registered"  # or "withdrawn" (`withdraw_in`): nothing new runs on it; its copy is disposed of
    withdrawn_at: dt.datetime | None = None
    disposed_at: dt.datetime | None = None
    key: str = ""  # what the row records: the copy's key in the storage root's data/ (an older home: its path)

    @property
    def withdrawn(self) -> bool:
        return self.state == WITHDRAWN

    @property
    def id_column(self) -> str:
        return next(c for c, i in self.columns.items() if i.role is Role.ID)

    def columns_with(self, *roles: Role) -> list[str]:
        return [c for c, i in self.columns.items() if i.role in roles]

    @property
    def engine(self) -> str:
        """The declared DP SQL engine (``duckdb`` or ``spark``; kept in the stored ingest report, absent = duckdb)."""
        return str(self.ingest_report.get("engine", "duckdb"))


def spark_installed() -> bool:
    """True when the optional Spark engine (``veilbox[spark]``: PySpark) is installed; never imports it."""
    return importlib.util.find_spec("pyspark") is not None


def _row_to_dataset(r: Any, engine: Engine) -> Dataset:
    cols = {c: ColumnInfo.model_validate(v) for c, v in json.loads(r.columns_json).items()}
    return Dataset(
        name=r.name,
        owner=r.owner,
        description=r.description,
        grade=Grade(r.grade),
        personal=r.personal,
        sensitive=r.sensitive,
        columns=cols,
        max_rows_per_unit=r.max_rows_per_unit,
        fingerprint=r.fingerprint,
        rows=r.rows,
        bytes=r.bytes,
        path=resolve_key(engine, r.path),
        ingest_report=json.loads(r.ingest_report_json),
        created_at=r.created_at,
        state=r.state,
        withdrawn_at=r.withdrawn_at,
        disposed_at=r.disposed_at,
        key=r.path,
    )


def verify_copy(ds: Dataset, sealer: Sealer | None = None) -> None:
    """Check ``ds``'s stored copy against its recorded fingerprint before it is read (`catalog.storage.verify_file`:
    a plain copy's digest; a sealed copy must be sealed under this dataset's own data key and, with ``sealer``, is
    decrypted — every chunk authenticated by its AEAD — and its plaintext's digest compared).
    `catalog.storage.IntegrityFailure` when it is missing or differs."""
    verify_file(ds.path, ds.fingerprint, key=ds.key, key_prefix=f"dataset:{ds.name}-", sealer=sealer)


def get(engine: Engine, name: str) -> Dataset | None:
    with engine.connect() as conn:
        r = conn.execute(select(t.datasets).where(t.datasets.c.name == name)).first()
    return _row_to_dataset(r, engine) if r else None


def get_many_in(conn: Connection, names: Iterable[str]) -> dict[str, Dataset | None]:
    """Records by name (``None`` for unregistered), in one statement within ``conn``'s transaction."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    rows = conn.execute(select(t.datasets).where(t.datasets.c.name.in_(wanted))).all()
    found = {r.name: _row_to_dataset(r, conn.engine) for r in rows}
    return {n: found.get(n) for n in wanted}


def fingerprint_in(conn: Connection, name: str) -> str:
    """The registered dataset's fingerprint as ``conn``'s transaction sees it (a journal recording the
    registration)."""
    return str(conn.execute(select(t.datasets.c.fingerprint).where(t.datasets.c.name == name)).scalar_one())


def list_all(engine: Engine) -> list[Dataset]:
    with engine.connect() as conn:
        rows = conn.execute(select(t.datasets).order_by(t.datasets.c.name)).all()
    return [_row_to_dataset(r, engine) for r in rows]


@dataclass(frozen=True)
class Registration:
    dataset: Dataset
    report: IngestReport


CONTENT_TAKEN = "dataset.content_registered_by_another_owner"


def content_taken() -> DomainError:
    """The refusal for content another owner registered: it names no dataset, owner or path."""
    return DomainError(POLICY_DENIED, "this content is already registered by another owner",
                       [{"field": "source", "reason": CONTENT_TAKEN}])


def _fingerprints_of_others(conn: Connection, owner: str) -> set[str]:
    """Every fingerprint (ingested copy and source file) of the datasets of owners other than ``owner``."""
    d = t.datasets.c
    out: set[str] = set()
    for fp, report in conn.execute(select(d.fingerprint, d.ingest_report_json).where(d.owner != owner)):
        out.add(fp)
        source = json.loads(report).get("source_fingerprint")
        if isinstance(source, str):
            out.add(source)
    return out


def _refuse_if_taken(conn: Connection, owner: str, *fingerprints: str) -> None:
    if _fingerprints_of_others(conn, owner) & set(fingerprints):
        raise content_taken()


def _row_key(engine: Engine, storage: Storage, key: str) -> str:
    """What the row records for the copy stored under ``key`` (`catalog.storage.stored_key`)."""
    if isinstance(storage, LocalStorage):
        return stored_key(engine, storage.root, storage.path_of(key))
    return key


def register(
    engine: Engine,
    spec: DatasetSpec,
    owner: str,
    data_dir: Path | Storage,
    import_roots: list[Path],
    max_source_bytes: int,
    hash_alg: HashAlg = "sha256",
    journal: Callable[[Connection], None] | None = None,
    sealer: Sealer | None = None,
) -> Registration:
    """Validate, copy and record a dataset; all or nothing. ``import_roots``: the directories ``owner`` may read
    (see the module docstring). ``journal`` is called in the transaction that inserts the row, as its last write
    (the caller's audit entry commits with the registration or not at all). With ``sealer`` the copy is sealed at
    rest under a data key of its own (`catalog.sealed`); a registration that fails destroys that key. ``data_dir``
    is the storage root's dataset area (`catalog.storage.Storage`, as `gateway.settings.Settings.storage` gives it;
    a directory: a `catalog.storage.LocalStorage` over it): the copy is written only through it."""
    if get(engine, spec.name) is not None:
        raise DomainError(ALREADY_EXISTS, "a dataset with this name already exists")
    if spec.engine == "spark" and not spark_installed():  # fail closed, nothing copied
        raise DomainError(INVALID_REQUEST, "the Spark engine is not installed",
                          [{"field": "engine", "reason": "engine.spark_unavailable"}])
    source = resolve_source(spec.source, import_roots, max_source_bytes)
    before = source_identity(source)
    source_fp = file_fingerprint(source, hash_alg)
    with engine.connect() as conn:  # refuse early, before the copy; checked again where the row is inserted
        _refuse_if_taken(conn, owner, source_fp)
    storage = LocalStorage(data_dir) if isinstance(data_dir, Path) else data_dir
    ing = ingest(spec, source, storage, hash_alg, sealer)

    def discard() -> None:
        ing.tmp_path.unlink(missing_ok=True)
        if sealer is not None and ing.key_id is not None:
            sealer.keys.destroy(ing.key_id)

    try:
        after = source_identity(source)
    except BaseException:
        discard()
        raise
    if after != before:  # truncated, rewritten or replaced while it was fingerprinted and copied
        discard()
        raise source_changed()
    ing.report.source_fingerprint = source_fp
    key = f"{spec.name}-{ing.fingerprint.split(':', 1)[1][:16]}.parquet"
    now = dt.datetime.now(dt.UTC)
    row = {
        "name": spec.name,
        "owner": owner,
        "description": spec.description,
        "grade": spec.grade.value,
        "personal": spec.personal,
        "sensitive": spec.sensitive,
        "columns_json": json.dumps({c: i.model_dump(mode="json", exclude={"sensitive"} if not i.sensitive else None)
                                    for c, i in ing.columns.items()}),
        "max_rows_per_unit": spec.max_rows_per_unit,
        "fingerprint": ing.fingerprint,
        "rows": ing.report.rows,
        "bytes": ing.report.bytes,
        "path": _row_key(engine, storage, key),  # relative to the storage root's data/
        "ingest_report_json": json.dumps(ing.report.as_dict() | ({"engine": spec.engine}
                                                                 if spec.engine != "duckdb" else {})),
        "created_at": now,
    }
    try:
        with engine.begin() as conn:
            _refuse_if_taken(conn, owner, source_fp, ing.fingerprint)
            conn.execute(t.datasets.insert().values(**row))
            storage.put_file(key, ing.tmp_path)  # durable before the row commits
            if journal is not None:
                journal(conn)
    except IntegrityError:
        discard()
        raise DomainError(ALREADY_EXISTS, "a dataset with this name already exists") from None
    except BaseException:
        discard()
        storage.delete(key)
        raise
    ds = get(engine, spec.name)
    assert ds is not None
    return Registration(ds, ing.report)


# --- withdrawal (docs/agreements.md, "Exit and withdrawal") ------------------------------------------------------


def _utc(t_: dt.datetime) -> dt.datetime:
    return t_ if t_.tzinfo is not None else t_.replace(tzinfo=dt.UTC)


def withdraw_in(conn: Connection, name: str, reason: str, now: dt.datetime) -> bool:
    """Mark ``name`` withdrawn within ``conn``'s transaction (registered → withdrawn; the record is kept). False when
    it was not registered (already withdrawn, or concurrently)."""
    d = t.datasets.c
    res = conn.execute(t.datasets.update().where(d.name == name, d.state == REGISTERED)
                       .values(state=WITHDRAWN, withdrawn_at=now, withdrawn_reason=reason))
    return res.rowcount == 1


def disposal_due(engine: Engine, grace_s: float, now: dt.datetime) -> list[Dataset]:
    """Withdrawn datasets whose copy is not disposed of yet and whose grace period (``grace_s``) has ended."""
    d = t.datasets.c
    with engine.connect() as conn:
        rows = conn.execute(select(t.datasets).where(d.state == WITHDRAWN, d.disposed_at.is_(None))
                            .order_by(d.name)).all()
    out = [_row_to_dataset(r, engine) for r in rows]
    return [ds for ds in out if ds.withdrawn_at is not None
            and _utc(ds.withdrawn_at) + dt.timedelta(seconds=grace_s) <= now]


def mark_disposed_in(conn: Connection, name: str, now: dt.datetime) -> bool:
    """Record within ``conn``'s transaction that ``name``'s copy was disposed of (once)."""
    d = t.datasets.c
    res = conn.execute(t.datasets.update().where(d.name == name, d.state == WITHDRAWN, d.disposed_at.is_(None))
                       .values(disposed_at=now))
    return res.rowcount == 1
