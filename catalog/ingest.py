"""Ingest: validate a declared spec against a source file and copy it into sandbox storage as Parquet.

The source must resolve (symlinks followed) to a readable regular file inside one of the directories the caller
may read — the gateway passes the registering owner's own import directories
(`gateway.settings.Settings.owner_import_dirs`) — and be no larger than the configured limit. A source that is
missing, unreadable, not a regular file, or outside those directories (another owner's file, a symlink into it,
any other path) gets one answer, `source_not_found` (``NOT_FOUND_OR_FORBIDDEN``): the same code, message and
details whatever the reason, so nobody learns from an error whether a path they may not read exists. A given
directory that is itself a symlink is ignored (an owner's directory cannot be pointed at another's). Only about
a file of its own does the owner hear more (its size, its suffix, its schema against the declaration).

Every column must be declared, types must fit the declaration, and every problem is reported at once. Bounded
numeric columns are clamped to their bounds while copying (the owner is told how many values were clamped);
rows without a privacy unit (null id) are dropped and counted. Ingest also counts the most rows any one privacy unit
has in the copy (``rows_per_unit_max`` in the report): the DP SQL engine skips per-unit bounding when that is within
the declared ``max_rows_per_unit``; it records the bounds each bounded column was clamped to (``bounds_enforced``),
and the engine does not clamp such a column again at query time. The copy is written to a temporary file first
(`catalog.storage.Storage.temp_file`); the caller puts it in place only when the metadata commits
(`catalog.storage.Storage.put_file`: the copy is fsynced here, the rename and its directory fsync happen inside the
inserting transaction). A source that cannot be read to its end —
truncated, malformed — is ``INVALID_REQUEST`` with reason ``source.unreadable``; one whose size, modification time
or inode changes while it is being fingerprinted and copied (`source_identity`) is ``INVALID_REQUEST`` with reason
``source.changed_during_ingest``. Either way the temporary copy is removed and nothing is registered.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from catalog.columns import ColumnInfo, ColumnSpec, DatasetSpec, Kind, Role
from catalog.durable import fsync_file
from catalog.errors import NOT_FOUND_OR_FORBIDDEN, DomainError, invalid
from catalog.fingerprint import HashAlg, digest, file_fingerprint
from catalog.sealed import Sealer
from catalog.storage import LocalStorage, Storage

BATCH_ROWS = 1 << 20


@dataclass
class IngestReport:
    rows: int = 0
    bytes: int = 0
    dropped_null_ids: int = 0
    clamped: dict[str, int] = field(default_factory=dict)
    out_of_domain: dict[str, int] = field(default_factory=dict)
    nulls: dict[str, int] = field(default_factory=dict)
    source_fingerprint: str | None = None  # of the source file's bytes, as the owner placed it
    rows_per_unit_max: int | None = None  # the most rows one privacy unit has in the registered copy
    # per bounded column, the [lo, hi] every non-NULL value of the registered copy lies in (clamped while copying;
    # a float NaN became NULL): the DP SQL engine skips clamping that column again at query time
    bounds_enforced: dict[str, list[float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rows": self.rows,
            "dropped_null_ids": self.dropped_null_ids,
            "clamped": self.clamped,
            "out_of_domain": self.out_of_domain,
            "nulls": self.nulls,
        }
        if self.source_fingerprint is not None:
            out["source_fingerprint"] = self.source_fingerprint
        if self.rows_per_unit_max is not None:
            out["rows_per_unit_max"] = self.rows_per_unit_max
        if self.bounds_enforced:
            out["bounds_enforced"] = self.bounds_enforced
        return out


@dataclass(frozen=True)
class Ingested:
    columns: dict[str, ColumnInfo]
    tmp_path: Path
    fingerprint: str
    report: IngestReport
    key_id: str | None = None  # the data key the copy is sealed under (None: a plain copy)


def source_not_found() -> DomainError:
    """The one refusal for a source the caller may not read or that does not exist (no existence oracle)."""
    return DomainError(NOT_FOUND_OR_FORBIDDEN, "source file not found in your import directory",
                       [{"field": "source", "reason": "source.not_found"}])


UNREADABLE = [{"field": "source", "reason": "source.unreadable"}]
CHANGED = [{"field": "source", "reason": "source.changed_during_ingest"}]


def source_changed() -> DomainError:
    return invalid("source changed while it was being registered; register it again once it is complete", CHANGED)


def source_identity(path: Path) -> tuple[int, int, int, int]:
    """(device, inode, size, mtime in ns) of ``path``: compared before and after the copy to catch a source that
    was truncated, rewritten or replaced meanwhile."""
    try:
        st = path.stat()
    except OSError:
        raise source_changed() from None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _inside(path: Path, dirs: list[Path]) -> bool:
    return any(path.is_relative_to(d) for d in dirs)


def resolve_source(source: str, import_roots: list[Path], max_bytes: int) -> Path:
    """The real path of ``source`` if it is a readable regular file under one of ``import_roots`` (the
    directories the caller may read), else refuse; every "cannot read it" is the same `source_not_found`."""
    raw = Path(source)
    if not raw.is_absolute():
        raise invalid("source must be an absolute path inside your import directory")
    try:
        dirs = [r.resolve() for r in import_roots if r.is_dir() and not r.is_symlink()]
        real = raw.resolve()  # not strict: a missing path is refused below exactly like another owner's file
        if not _inside(real, dirs) or not real.is_file() or not os.access(real, os.R_OK):
            raise source_not_found()
        size = real.stat().st_size
    except (OSError, RuntimeError, ValueError):  # ValueError: an embedded NUL byte
        raise source_not_found() from None
    if size > max_bytes:
        raise invalid(f"source is larger than the limit of {max_bytes} bytes")
    if real.suffix.lower() not in (".parquet", ".csv"):
        raise invalid("source must be a .parquet or .csv file")
    return real


def kind_of(t: pa.DataType) -> Kind | None:
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_boolean(t):
        return Kind.BOOLEAN
    if pa.types.is_integer(t):
        return Kind.INTEGER
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return Kind.FLOAT
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return Kind.STRING
    if pa.types.is_date(t):
        return Kind.DATE
    if pa.types.is_timestamp(t):
        return Kind.TIMESTAMP
    return None


def _domain_fits(kind: Kind, domain: tuple[Any, ...]) -> bool:
    if kind is Kind.STRING:
        return all(isinstance(v, str) for v in domain)
    if kind is Kind.INTEGER:
        return all(isinstance(v, int) and not isinstance(v, bool) for v in domain)
    if kind is Kind.BOOLEAN:
        return all(isinstance(v, bool) for v in domain)
    if kind is Kind.FLOAT:
        return all(isinstance(v, int | float) and not isinstance(v, bool) for v in domain)
    return False


def check_spec(spec: DatasetSpec, schema: pa.Schema) -> dict[str, ColumnInfo]:
    """Every violation between the declaration and the file's schema, reported together."""
    problems: list[dict[str, Any]] = []
    file_cols = list(schema.names)
    for c in file_cols:
        if c not in spec.columns:
            problems.append({"column": c, "problem": "column in file is not declared (every column needs a role)"})
    for c in spec.columns:
        if c not in file_cols:
            problems.append({"column": c, "problem": "declared column is missing from the file"})
    if len(set(file_cols)) != len(file_cols):
        problems.append({"column": None, "problem": "file has duplicate column names"})
    infos: dict[str, ColumnInfo] = {}
    for c in file_cols:
        cs: ColumnSpec | None = spec.columns.get(c)
        if cs is None:
            continue
        kind = kind_of(schema.field(c).type)
        if kind is None:
            problems.append({"column": c, "problem": f"unsupported column type {schema.field(c).type}"})
            continue
        if cs.role is Role.MEASURE and not kind.numeric:
            problems.append({"column": c, "problem": f"a measure must be numeric, file has {kind.value}"})
        if cs.bounds is not None:
            if not kind.numeric:
                problems.append({"column": c, "problem": f"bounds need a numeric column, file has {kind.value}"})
            elif kind is Kind.INTEGER and not all(float(b).is_integer() for b in cs.bounds):
                problems.append({"column": c, "problem": "bounds of an integer column must be integers"})
        if cs.domain is not None and not _domain_fits(kind, cs.domain):
            problems.append({"column": c, "problem": f"domain values do not match the column type {kind.value}"})
        infos[c] = ColumnInfo(role=cs.role, kind=kind, domain=cs.domain, bounds=cs.bounds,
                              description=cs.description, sensitive=cs.sensitive)
    if problems:
        raise invalid("the declared columns do not match the file", problems)
    return infos


def _csv_types(spec: DatasetSpec) -> dict[str, pa.DataType]:
    """Read identifiers and string domains as strings (keeps leading zeros, stops type guessing)."""
    out: dict[str, pa.DataType] = {}
    for c, cs in spec.columns.items():
        if cs.role in (Role.ID, Role.JOIN_KEY, Role.NEVER_OUTPUT) or (
            cs.domain is not None and isinstance(cs.domain[0], str)
        ):
            out[c] = pa.string()
    return out


def _batches(path: Path, spec: DatasetSpec) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    try:
        if path.suffix.lower() == ".parquet":
            pf = pq.ParquetFile(path)
            return pf.schema_arrow, pf.iter_batches(batch_size=BATCH_ROWS)
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=16 << 20),
            convert_options=pacsv.ConvertOptions(column_types=_csv_types(spec)),
        )
        return reader.schema, iter(reader)
    except (pa.ArrowException, OSError, ValueError):
        raise invalid("source could not be read as Parquet or CSV", UNREADABLE) from None


def _normalise(col: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if pa.types.is_large_string(col.type):
        col = col.cast(pa.string())
    if pa.types.is_decimal(col.type):
        col = col.cast(pa.float64())
    return col


def _clamp(col: pa.Array, lo: float, hi: float, kind: Kind) -> tuple[pa.Array, int]:
    if kind is Kind.INTEGER:
        lo_s, hi_s = pa.scalar(int(lo), col.type), pa.scalar(int(hi), col.type)
    else:
        lo_s, hi_s = pa.scalar(float(lo), col.type), pa.scalar(float(hi), col.type)
    outside = pc.or_(pc.less(col, lo_s), pc.greater(col, hi_s))
    n = pc.sum(outside).as_py() or 0
    if kind is Kind.FLOAT:
        nan = pc.is_nan(col)
        n += pc.sum(nan).as_py() or 0
        col = pc.if_else(nan, pa.scalar(None, col.type), col)
    if n:
        # NULLs stay NULL (the element-wise functions would otherwise replace them by the bound)
        col = pc.min_element_wise(pc.max_element_wise(col, lo_s, skip_nulls=False), hi_s, skip_nulls=False)
    return col, int(n)


def _rows_per_unit_max(path: Path | pa.Buffer, id_col: str) -> int:
    """The most rows any one privacy unit has in the written copy (counted over the whole file: a unit's rows may
    span batches). The DP SQL engine skips per-unit bounding when this is within ``max_rows_per_unit``."""
    ids = pq.read_table(pa.BufferReader(path) if isinstance(path, pa.Buffer) else path, columns=[id_col])
    counts = ids.group_by(id_col).aggregate([(id_col, "count")])
    return int(pc.max(counts.column(f"{id_col}_count")).as_py() or 0)


def ingest(spec: DatasetSpec, source: Path, out_dir: Path | Storage, hash_alg: HashAlg = "sha256",
           sealer: Sealer | None = None) -> Ingested:
    """Validate, clamp and copy ``source``; return the temporary Parquet copy and its fingerprint.

    ``out_dir`` is the storage the copy will be put into (`catalog.storage.Storage`; a directory: a
    `catalog.storage.LocalStorage` over it): the copy is built at its `Storage.temp_file` and the caller puts it
    under its key (`Storage.put_file`) once the key — which names the fingerprint — is known.

    With ``sealer`` the Parquet copy is built in this process's memory and only its sealed form is written
    (`catalog.sealed`, under a fresh data key ``dataset:<name>-<random>``: `Ingested.key_id`); the fingerprint
    is that of the plaintext Parquet bytes either way, so a reader verifies what it decrypted."""
    schema, batches = _batches(source, spec)
    infos = check_spec(spec, schema)
    report = IngestReport()
    id_col = next(c for c, i in infos.items() if i.role is Role.ID)
    storage = LocalStorage(out_dir) if isinstance(out_dir, Path) else out_dir
    tmp = storage.temp_file(f"{spec.name}.parquet", f"ingest-{spec.name}")
    sink: Path | pa.BufferOutputStream = tmp if sealer is None else pa.BufferOutputStream()
    writer: pq.ParquetWriter | None = None
    try:
        for batch in batches:
            cols: dict[str, pa.Array] = {}
            for c in schema.names:
                cols[c] = _normalise(batch.column(c))
            keep = pc.is_valid(cols[id_col])
            dropped = len(keep) - (pc.sum(keep).as_py() or 0)
            if dropped:
                report.dropped_null_ids += int(dropped)
                cols = {c: pc.filter(a, keep) for c, a in cols.items()}
            for c, info in infos.items():
                a = cols[c]
                if info.bounds is not None:
                    a, n = _clamp(a, info.bounds[0], info.bounds[1], info.kind)
                    if n:
                        report.clamped[c] = report.clamped.get(c, 0) + n
                    if pa.types.is_integer(a.type) or pa.types.is_float64(a.type):  # bounds exact in the type
                        report.bounds_enforced[c] = [info.bounds[0], info.bounds[1]]
                elif info.domain is not None:
                    inside = pc.is_in(a, value_set=pa.array(list(info.domain), type=a.type))
                    n = int(pc.sum(pc.invert(inside)).as_py() or 0) - a.null_count
                    if n > 0:
                        report.out_of_domain[c] = report.out_of_domain.get(c, 0) + n
                if a.null_count:
                    report.nulls[c] = report.nulls.get(c, 0) + a.null_count
                cols[c] = a
            table = pa.table(cols)
            if writer is None:
                writer = pq.ParquetWriter(sink, table.schema, compression="zstd")
            writer.write_table(table, row_group_size=BATCH_ROWS)
            report.rows += table.num_rows
        if writer is None:
            raise invalid("source has no rows")
    except pa.ArrowException:  # includes ArrowIOError: a source cut short while it was read
        if writer is not None:
            writer.close()
            writer = None
        tmp.unlink(missing_ok=True)
        raise invalid("source could not be read: malformed or inconsistent content", UNREADABLE) from None
    except BaseException:
        if writer is not None:
            writer.close()
            writer = None
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if writer is not None:
            writer.close()
    if report.rows == 0:
        tmp.unlink(missing_ok=True)
        raise invalid("source has no rows with a privacy unit")
    if isinstance(sink, pa.BufferOutputStream):
        assert sealer is not None
        plain = sink.getvalue()
        report.rows_per_unit_max = _rows_per_unit_max(plain, id_col)
        data = plain.to_pybytes()
        del plain
        fp = digest(data, hash_alg)
        key_id = f"dataset:{spec.name}-{os.urandom(8).hex()}"
        try:
            sealer.write_temp(tmp, key_id, data, new_key=True)
        except BaseException:
            tmp.unlink(missing_ok=True)
            _forget_key(sealer, key_id)
            raise
        report.bytes = tmp.stat().st_size
        return Ingested(infos, tmp, fp, report, key_id)
    report.rows_per_unit_max = _rows_per_unit_max(tmp, id_col)
    fsync_file(tmp)
    report.bytes = tmp.stat().st_size
    return Ingested(infos, tmp, file_fingerprint(tmp, hash_alg), report)


def _forget_key(sealer: Sealer, key_id: str) -> None:
    """Destroy the data key of a copy that will not be registered (none was created: nothing to do)."""
    try:
        sealer.keys.destroy(key_id)
    except LookupError:
        pass
