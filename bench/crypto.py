"""Benchmark of encryption at rest: one DP query over the same synthetic ``tax_income`` (default 1M rows,
``--rows``) registered three ways — plain Parquet, sealed under ``intl`` (AES-256-GCM) and under ``sm``
(SM4-GCM) — in the same process, runs interleaved (plain, intl, sm, plain, …) so all three see the same load.

Reported per variant: ``register_ms`` (ingest: validate, clamp, write; sealed: build in memory, fingerprint,
seal), ``file_bytes``, ``start_ms`` (the query worker ready: for a sealed copy this includes reading it,
decrypting into the worker's memfd and building the view), ``query_ms`` (median of ``--runs`` DP answers of
``SELECT district, AVG(monthly_income) … GROUP BY district`` through `sandbox.run`: worker, noise, release) and
the ratios to plain; and per suite the raw AEAD throughput (``aead_mb_s``, sealing 64 MiB in 1 MiB chunks).
Sealing changes only the worker's start (decryption happens once per worker, see docs/crypto.md "Encryption at
rest"); the per-query figures should agree within noise. Data are cached under ``bench/.data/``; the keys live
in memory only.

Per suite (``suites``, with the ``sm``/``intl`` ratios) the signing side as well: ``audit_appends_s``
(`gateway.audit.AuditLog.append` on SQLite, each its own commit: the suite's hash chain, a signed head every 100
entries) and ``receipts_s`` (the suite's work of one plain check's answer: the subject's HMAC, the parameters'
digest, the signed receipt `gateway.services.receipts.issue_receipt` and its digest for the audit entry), each
over ``--sign-seconds``. ``--no-query`` reports only these. One JSON line goes to stdout; progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from catalog import registry  # noqa: E402
from catalog._tables import metadata  # noqa: E402
from catalog.columns import DatasetSpec  # noqa: E402
from catalog.datagen import generate  # noqa: E402
from catalog.fingerprint import HashAlg  # noqa: E402
from catalog.sealed import CHUNK, Sealer  # noqa: E402
from catalog.store import make_engine  # noqa: E402
from gateway import _tables as gateway_tables  # noqa: E402
from gateway.audit import AuditEvent, AuditLog  # noqa: E402
from gateway.keys import Keys  # noqa: E402
from gateway.services.receipts import digest, issue_receipt  # noqa: E402
from sandbox import QueryWorker, TableView, prepare, run  # noqa: E402

DATA = ROOT / "bench" / ".data"
GRANTED = frozenset(["district", "age", "gender", "industry", "monthly_income", "tax_paid",
                     "social_insurance_months"])
SQL = "SELECT district, AVG(monthly_income) AS avg_income FROM tax_income GROUP BY district"
VARIANTS = ("plain", "intl", "sm")


class MemoryKeys:
    """Data keys held in this process only (the service's are wrapped in its keyring)."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}

    def data_key(self, object_id: str) -> bytes:
        return self.keys[object_id]

    def new_data_key(self, object_id: str) -> bytes:
        self.keys[object_id] = os.urandom(32)
        return self.keys[object_id]

    def destroy(self, object_id: str) -> bool:
        return self.keys.pop(object_id, None) is not None


def log(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


def aead_mb_s(suite: str) -> float:
    sealer = Sealer(suite, MemoryKeys())
    data = os.urandom(64 * CHUNK)
    t = time.perf_counter()
    sealer.seal_bytes("bench:aead", data, new_key=True)
    return round(64 / (time.perf_counter() - t), 1)


def _rate(op: Any, seconds: float) -> float:
    """Calls of ``op`` per second over at least ``seconds`` (after 20 warm-up calls)."""
    for i in range(20):
        op(i)
    n, t = 0, time.perf_counter()
    while True:
        op(n)
        n += 1
        elapsed = time.perf_counter() - t
        if elapsed >= seconds and n >= 50:
            return round(n / elapsed, 1)


def signing_rates(suite: str, seconds: float) -> dict[str, float]:
    """Audit appends/s and plain-check receipts/s under ``suite`` (see the module docstring)."""
    keys = Keys.generate(suite)
    alg: HashAlg = "sm3" if suite == "sm" else "sha256"
    with tempfile.TemporaryDirectory(prefix="veilbox-bench-audit-") as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'audit.db'}")
        gateway_tables.metadata.create_all(engine)
        audit = AuditLog(engine, keys, alg, 100)
        appends = _rate(lambda i: audit.append(AuditEvent(
            actor="bank_a", role="bank", action="verify.check", subject_hash=keys.subject_hash(f"P{i:08d}"),
            details={"method": "POST", "path": "/v1/verify/check", "status": 200})), seconds)
        engine.dispose()
    ctx = SimpleNamespace(keys=keys)

    def receipt(i: int) -> None:
        subject_hash = keys.subject_hash(f"P{i:08d}")
        params = digest(ctx, '{"min_income":5000}')  # type: ignore[arg-type]
        r = issue_receipt(ctx, {"kind": "verification", "product": "income_check",  # type: ignore[arg-type]
                                "agreement_id": "agr_bench", "subject_hash": subject_hash, "params_digest": params,
                                "consent_digest": None, "dataset_fingerprint": "sha256:" + "a" * 64,
                                "result": True})
        digest(ctx, r)  # type: ignore[arg-type]

    return {"audit_appends_s": appends, "receipts_s": _rate(receipt, seconds)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory-limit", default="4GB")
    ap.add_argument("--sign-seconds", type=float, default=3.0)
    ap.add_argument("--no-query", action="store_true", help="only the per-suite audit and receipt rates")
    args = ap.parse_args()
    suites = {}
    for suite in ("intl", "sm"):
        suites[suite] = {"aead_mb_s": aead_mb_s(suite), **signing_rates(suite, args.sign_seconds)}
        log(f"{suite}: {suites[suite]}")
    suites["sm_vs_intl"] = {k: round(suites["sm"][k] / suites["intl"][k], 3) for k in suites["intl"]}
    if args.no_query:
        print(json.dumps({"bench": "crypto", "suites": suites}))
        return 0
    gen_dir = DATA / f"gen-{args.rows}"
    if not (gen_dir / "tax_income.spec.json").is_file():
        log(f"generating {args.rows:,} rows into {gen_dir} ...")
        generate(gen_dir, rows=args.rows)
    spec = DatasetSpec.model_validate(json.loads((gen_dir / "tax_income.spec.json").read_text()))
    home = DATA / f"crypto-{args.rows}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    out: dict[str, Any] = {"bench": "crypto", "rows": args.rows, "runs": args.runs, "query": SQL, "variants": {},
                           "suites": suites}
    workers: dict[str, QueryWorker] = {}
    plans: dict[str, Any] = {}
    try:
        for v in VARIANTS:
            engine = make_engine(f"sqlite:///{home / f'{v}.db'}")
            metadata.create_all(engine)
            sealer = None if v == "plain" else Sealer(v, MemoryKeys())
            t = time.perf_counter()
            ds = registry.register(engine, spec, owner="bench", data_dir=home / v, import_roots=[gen_dir],
                                   max_source_bytes=1 << 40, sealer=sealer).dataset
            register_ms = (time.perf_counter() - t) * 1000
            w = QueryWorker({"tax_income": ds.path}, threads=args.threads, memory_limit=args.memory_limit,
                            timeout_s=600, sealer=sealer)
            t = time.perf_counter()
            w.start()
            start_ms = (time.perf_counter() - t) * 1000
            workers[v] = w
            plans[v] = prepare(SQL, {"tax_income": TableView(ds, GRANTED)}, epsilon=1.0, delta=0, min_group_units=0)
            run(plans[v], w)  # warm-up (and the worker's one-off bound check)
            out["variants"][v] = {"register_ms": round(register_ms, 1), "file_bytes": ds.path.stat().st_size,
                                  "start_ms": round(start_ms, 1)}
            log(f"{v}: registered in {register_ms / 1000:.2f} s, worker ready in {start_ms / 1000:.2f} s")
        times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for _ in range(args.runs):  # interleaved
            for v in VARIANTS:
                t = time.perf_counter()
                run(plans[v], workers[v])
                times[v].append((time.perf_counter() - t) * 1000)
    finally:
        for w in workers.values():
            w.stop()
        shutil.rmtree(home, ignore_errors=True)
    plain = out["variants"]["plain"]
    plain_q = statistics.median(times["plain"])
    for v in VARIANTS:
        e = out["variants"][v]
        e["query_ms"] = round(statistics.median(times[v]), 2)
        if v != "plain":
            e["query_ratio"] = round(e["query_ms"] / plain_q, 3)
            e["start_ratio"] = round(e["start_ms"] / plain["start_ms"], 2)
            e["register_ratio"] = round(e["register_ms"] / plain["register_ms"], 2)
            e["aead_mb_s"] = suites[v]["aead_mb_s"]
        log(f"{v:>5}: query {e['query_ms']:8.2f} ms  start {e['start_ms']:8.1f} ms  register {e['register_ms']:8.1f} ms"
            f"  {e['file_bytes']:,} bytes")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
