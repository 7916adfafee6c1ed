"""The dataset registry: atomic registration, lookup, listing.

Registration is atomic: the Parquet copy is written to a temporary file, the metadata row is inserted in a
transaction, and only after that commits is the file renamed to its final place; on any failure the temporary
file is removed and no row remains.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from catalog import _tables as t
from catalog.columns import ColumnInfo, DatasetSpec, Grade, Role
from catalog.errors import ALREADY_EXISTS, DomainError
from catalog.fingerprint import HashAlg
from catalog.ingest import IngestReport, ingest, resolve_source


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

    @property
    def id_column(self) -> str:
        return next(c for c, i in self.columns.items() if i.role is Role.ID)

    def columns_with(self, *roles: Role) -> list[str]:
        return [c for c, i in self.columns.items() if i.role in roles]


def _row_to_dataset(r: Any) -> Dataset:
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
        path=Path(r.path),
        ingest_report=json.loads(r.ingest_report_json),
        created_at=r.created_at,
    )


def get(engine: Engine, name: str) -> Dataset | None:
    with engine.connect() as conn:
        r = conn.execute(select(t.datasets).where(t.datasets.c.name == name)).first()
    return _row_to_dataset(r) if r else None


def list_all(engine: Engine) -> list[Dataset]:
    with engine.connect() as conn:
        rows = conn.execute(select(t.datasets).order_by(t.datasets.c.name)).all()
    return [_row_to_dataset(r) for r in rows]


@dataclass(frozen=True)
class Registration:
    dataset: Dataset
    report: IngestReport


def register(
    engine: Engine,
    spec: DatasetSpec,
    owner: str,
    data_dir: Path,
    import_roots: list[Path],
    max_source_bytes: int,
    hash_alg: HashAlg = "sha256",
) -> Registration:
    """Validate, copy and record a dataset; all or nothing."""
    if get(engine, spec.name) is not None:
        raise DomainError(ALREADY_EXISTS, "a dataset with this name already exists")
    source = resolve_source(spec.source, import_roots, max_source_bytes)
    ing = ingest(spec, source, data_dir, hash_alg)
    final = data_dir / f"{spec.name}-{ing.fingerprint.split(':', 1)[1][:16]}.parquet"
    now = dt.datetime.now(dt.UTC)
    row = {
        "name": spec.name,
        "owner": owner,
        "description": spec.description,
        "grade": spec.grade.value,
        "personal": spec.personal,
        "sensitive": spec.sensitive,
        "columns_json": json.dumps({c: i.model_dump(mode="json") for c, i in ing.columns.items()}),
        "max_rows_per_unit": spec.max_rows_per_unit,
        "fingerprint": ing.fingerprint,
        "rows": ing.report.rows,
        "bytes": ing.report.bytes,
        "path": str(final),
        "ingest_report_json": json.dumps(ing.report.as_dict()),
        "created_at": now,
    }
    try:
        with engine.begin() as conn:
            conn.execute(t.datasets.insert().values(**row))
            ing.tmp_path.replace(final)
    except IntegrityError:
        ing.tmp_path.unlink(missing_ok=True)
        raise DomainError(ALREADY_EXISTS, "a dataset with this name already exists") from None
    except BaseException:
        ing.tmp_path.unlink(missing_ok=True)
        final.unlink(missing_ok=True)
        raise
    ds = get(engine, spec.name)
    assert ds is not None
    return Registration(ds, ing.report)
