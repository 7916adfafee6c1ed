"""Head-of-line benchmark: how long a plain verification check, ``GET /health`` and ``GET /ready`` take while
``--heavy`` DP queries (default 48) run on one dataset, against the same calls on an idle gateway.

A fresh home over a synthetic ``tax_income`` (``--rows``, default 1M), one grantee with an auto-approving
agreement (queries and checks), a verification product, latency padding off. The heavy queries are sent by
``--heavy`` client threads at once, each repeating its query until the measurement ends; the short calls are
then timed one after the other (``--samples`` each) while every heavy query is still in flight. Reports medians
and maxima in ms, the number of heavy calls answered and refused (``QUOTA_EXCEEDED`` reason ``service.busy``), the
heavy queries answered per second over the load (at least ``--hold`` seconds), and the settings in force. Prints
one JSON line; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HEAVY_SQL = (
    "SELECT district, gender, industry, AVG(monthly_income) AS a, SUM(tax_paid) AS t, COUNT(*) AS n "
    "FROM tax_income GROUP BY district, gender, industry"
)
GRANTED = ["district", "age", "gender", "industry", "monthly_income", "tax_paid", "social_insurance_months"]


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def sample_ms(call: Callable[[], Any], samples: int) -> dict[str, float]:
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        r = call()
        times.append((time.perf_counter() - t0) * 1000)
        assert getattr(r, "status_code", 200) == 200, getattr(r, "text", "")[:300]
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--heavy", type=int, default=48)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--engine-threads", type=int, default=2, help="DuckDB threads per engine (VEILBOX_ENGINE_THREADS)")
    ap.add_argument("--hold", type=float, default=30.0, help="seconds the heavy load lasts at least (throughput)")
    args = ap.parse_args()

    import httpx

    from catalog.datagen import generate
    from gateway.context import init_home, open_context
    from gateway.server import BackgroundServer
    from gateway.settings import Settings
    from veilbox.client import Client

    root = Path(tempfile.mkdtemp(prefix="veilbox-bench-lanes-"))
    log(f"generating {args.rows:,} rows …")
    data = generate(root / "incoming" / "tax", rows=args.rows, seed=5)
    settings = Settings(
        home=root / "home",
        import_roots=[root / "incoming"],
        latency_bucket_ms=0,
        env="test",
        max_inflight_per_principal=max(8, args.heavy),
        query_timeout_s=600,
        engine_threads=args.engine_threads,
    )
    token = init_home(settings)
    ctx = open_context(settings)
    out: dict[str, Any] = {
        "rows": args.rows,
        "heavy_queries": args.heavy,
        "settings": {
            k: getattr(settings, k)
            for k in ("engine_threads", "engines_per_dataset", "heavy_lane", "heavy_queue", "heavy_wait_s")
            if hasattr(settings, k)
        },
    }
    with BackgroundServer(ctx) as srv:
        admin = Client(srv.url, token, timeout=600)
        owner = admin.with_token(admin.create_principal("tax", "owner")["token"])
        bank_token = admin.create_principal("bank", "bank")["token"]
        bank = admin.with_token(bank_token)
        log("registering …")
        owner.register_dataset(json.loads(data.tax_income_spec.read_text()))
        ag = owner.propose_agreement(
            {
                "title": "bench",
                "grantee": "bank",
                "datasets": ["tax_income"],
                "columns": {"tax_income": GRANTED},
                "purposes": ["credit_risk"],
                "job_kinds": ["query", "verify"],
                "valid_from": "2026-01-01T00:00:00Z",
                "valid_until": "2036-01-01T00:00:00Z",
                "budget": {"epsilon": 10**6},
                "min_group_units": 1,
                "approval": "auto_within_budget",
                "quotas": {
                    "calls_per_day": 10**8,
                    "jobs_per_day": 10**6,
                    "verify_per_subject_per_day": 10**5,
                    "distinct_params_per_subject": 10**4,
                },
            }
        )
        agreement = bank.accept_agreement(ag["id"])["id"]
        owner.define_verification(
            {
                "name": "income_at_least",
                "dataset": "tax_income",
                "subject_column": "person_id",
                "predicate": "monthly_income >= :threshold",
                "params": {"threshold": "integer"},
            }
        )
        check_n = [0]

        def check() -> Any:
            check_n[0] += 1
            return bank.check(
                "income_at_least", agreement, "P0000001", {"threshold": 1000 + check_n[0]}, consent_ref="bench"
            )

        plain = httpx.Client(base_url=srv.url, timeout=600)
        t0 = time.perf_counter()
        bank.query(agreement, HEAVY_SQL, 1)  # warm-up: starts an engine
        one_ms = (time.perf_counter() - t0) * 1000
        bank.query(agreement, HEAVY_SQL, 1)
        t0 = time.perf_counter()
        bank.query(agreement, HEAVY_SQL, 1)
        out["one_heavy_query_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        log(f"one heavy query: {out['one_heavy_query_ms']} ms (first {one_ms:.0f} ms)")
        check()
        out["idle"] = {
            "check": sample_ms(check, args.samples),
            "health": sample_ms(lambda: plain.get("/health"), args.samples),
            "ready": sample_ms(lambda: plain.get("/ready"), args.samples),
        }
        log("idle:", out["idle"])

        stop = threading.Event()
        counts = {"answered": 0, "refused": 0, "other": 0}
        guard = threading.Lock()

        def heavy() -> None:
            with httpx.Client(base_url=srv.url, timeout=600, headers={"Authorization": f"Bearer {bank_token}"}) as http:
                while not stop.is_set():
                    r = http.post("/v1/queries", json={"agreement_id": agreement, "sql": HEAVY_SQL, "epsilon": 1})
                    key = "answered" if r.status_code == 200 else "refused" if r.status_code == 429 else "other"
                    with guard:
                        counts[key] += 1
                    if key == "refused":
                        time.sleep(float(r.headers.get("Retry-After", "1")))

        threads = [threading.Thread(target=heavy, daemon=True) for _ in range(args.heavy)]
        started = time.perf_counter()
        for th in threads:
            th.start()
        time.sleep(2.0)  # every heavy query sent and queued
        out["loaded"] = {
            "health": sample_ms(lambda: plain.get("/health"), args.samples),
            "ready": sample_ms(lambda: plain.get("/ready"), args.samples),
            "check": sample_ms(check, args.samples),
        }
        log("under load:", out["loaded"])
        time.sleep(max(0.0, args.hold - (time.perf_counter() - started)))
        with guard:
            answered, held_s = counts["answered"], time.perf_counter() - started
        stop.set()
        for th in threads:
            th.join(600)
        out["heavy_calls"] = counts
        out["heavy_answered_per_s"] = round(answered / held_s, 2)
        plain.close()
        admin.close()
    ctx.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
