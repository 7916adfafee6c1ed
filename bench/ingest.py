"""Ingest benchmark: register N generated rows (validate, clamp, copy, fingerprint) vs a plain pyarrow
read+write of the same file; and durable audit appends per second.

Prints one JSON line on stdout. `--rows` (default 10M), `--quick` (500k rows)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from catalog import _tables, registry  # noqa: E402
from catalog.columns import DatasetSpec  # noqa: E402
from catalog.datagen import generate  # noqa: E402
from catalog.store import make_engine  # noqa: E402
from gateway import _tables as gt  # noqa: E402
from gateway.audit import AuditEvent, AuditLog  # noqa: E402
from gateway.keys import Keys  # noqa: E402


class PeakRSS:
    """Samples this process's resident set size in a thread; reports the peak above the starting point."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = self.proc.memory_info().rss
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()

    @property
    def mib(self) -> float:
        return round((self.peak - self.base) / 2**20, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--appends", type=int, default=2000)
    a = ap.parse_args()
    rows = 500_000 if a.quick else a.rows
    cache = ROOT / "bench" / ".data" / f"city-{rows}"
    if not (cache / "tax_income.parquet").exists():
        print(f"generating {rows} rows…", file=sys.stderr)
        generate(cache, rows=rows)
    src = cache / "tax_income.parquet"
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        # baseline: plain pyarrow read + write of the same file, streamed by row group
        with PeakRSS() as base_mem:
            t0 = time.perf_counter()
            pf = pq.ParquetFile(src)
            w = pq.ParquetWriter(tmp / "plain.parquet", pf.schema_arrow, compression="zstd")
            for b in pf.iter_batches(batch_size=1 << 20):
                w.write_batch(b)
            w.close()
            t_plain = time.perf_counter() - t0
        engine = make_engine(f"sqlite:///{tmp / 'meta.db'}")
        _tables.metadata.create_all(engine)
        gt.metadata.create_all(engine)
        spec = DatasetSpec.model_validate(json.loads((cache / "tax_income.spec.json").read_text()))
        with PeakRSS() as reg_mem:
            t0 = time.perf_counter()
            registry.register(engine, spec, "owner", tmp / "data", [cache], 1 << 40)
            t_reg = time.perf_counter() - t0
        log = AuditLog(engine, Keys.generate(), "sha256", 100)
        t0 = time.perf_counter()
        for i in range(a.appends):
            log.append(AuditEvent(actor="bench", role="operator", action="query.run", details={"i": i}))
        t_audit = time.perf_counter() - t0
        t0 = time.perf_counter()
        ok = log.verify().ok
        t_verify = time.perf_counter() - t0
    print(json.dumps({
        "bench": "ingest",
        "rows": rows,
        "register_rows_per_s": round(rows / t_reg),
        "plain_pyarrow_rows_per_s": round(rows / t_plain),
        "ratio_register_vs_plain": round(t_reg / t_plain, 2),
        "register_peak_mib": reg_mem.mib,
        "plain_peak_mib": base_mem.mib,
        "audit_appends_per_s_durable": round(a.appends / t_audit),
        "audit_verify_entries_per_s": round(a.appends / t_verify),
        "audit_chain_ok": ok,
    }))


if __name__ == "__main__":
    main()
