"""Policy benchmark: decisions per second, durable ledger debits per second, and the same debits from 16
concurrent clients (no overspend), against SQLite in WAL mode with ``synchronous=FULL``.

Baselines side by side: the floor for a decision is loading the agreement row alone (one SELECT); the floor
for a debit is a bare ``UPDATE … SET spent = spent + ?`` committed on the same kind of store (no check, no
entry, no exact arithmetic). Ratios are ours / floor in time per operation.

Prints exactly one JSON line on stdout; progress on stderr. `--quick` uses fewer operations.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import policies  # noqa: E402
from catalog.columns import DatasetSpec  # noqa: E402
from catalog.datagen import generate  # noqa: E402
from catalog.registry import register  # noqa: E402
from catalog.store import make_engine  # noqa: E402
from gateway import schema  # noqa: E402
from policies import (  # noqa: E402
    Action,
    Actor,
    Budget,
    ledger,
)
from policies.agreements.record import load_agreement  # noqa: E402


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def setup(tmp: Path, epsilon: int) -> tuple[object, str]:
    data = generate(tmp / "incoming", rows=1000, seed=1)
    engine = make_engine(f"sqlite:///{tmp / 'meta.db'}")
    schema.upgrade(engine)
    spec = json.loads(data.tax_income_spec.read_text())
    register(engine, DatasetSpec.model_validate(spec), "owner", tmp / "data", [tmp / "incoming"], 1 << 34, "sha256")
    doc = {"title": "bench", "grantee": "op", "datasets": ["tax_income"],
           "columns": {"tax_income": ["district", "age", "monthly_income"]}, "purposes": ["statistics"],
           "job_kinds": ["query"], "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2099-01-01T00:00:00Z",
           "budget": {"epsilon": epsilon}, "min_group_units": 5, "approval": "auto_within_budget",
           "quotas": {"calls_per_day": 10**9, "jobs_per_day": 10**6}}
    ag = policies.create_agreement(engine, Actor("owner", "owner"), doc)
    policies.accept(engine, Actor("op", "operator"), ag.id)
    return engine, ag.id


def rate(n: int, fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n_dec, n_deb, n_conc = (300, 200, 160) if args.quick else (2000, 1000, 800)
    tmp = Path(tempfile.mkdtemp(prefix="veilbox-bench-policy-"))
    engine, ag_id = setup(tmp, epsilon=10**6)
    actor = Actor("op", "operator")
    cost = Budget(Fraction(1, 10))

    log(f"decisions × {n_dec}")
    decide_rate = rate(n_dec, lambda i: policies.check(engine, actor, Action.QUERY_RUN, ag_id, datasets=["tax_income"],
                                                       columns={"tax_income": ["district"]}, job_kind="query",
                                                       purpose="statistics", cost=cost).raise_if_denied())
    load_rate = rate(n_dec, lambda i: load_agreement(engine, ag_id))

    log(f"durable debits × {n_deb}")
    debit_rate = rate(n_deb, lambda i: ledger.charge(engine, ag_id, ["tax_income"], cost, f"seq-{i}"))
    raw = sqlite3.connect(tmp / "raw.db", isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=FULL")
    raw.execute("CREATE TABLE acc (id INTEGER PRIMARY KEY, spent REAL)")
    raw.execute("INSERT INTO acc VALUES (1, 0)")

    def raw_debit(i: int) -> None:
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("UPDATE acc SET spent = spent + 0.1 WHERE id = 1")
        raw.execute("COMMIT")

    raw_rate = rate(n_deb, raw_debit)

    log(f"{n_conc} debits from 16 concurrent clients against a budget of {n_conc // 2} × 0.1")
    engine2, ag2 = setup(tmp / "conc", epsilon=n_conc // 20)  # room for exactly half of the debits
    ok = refused = 0
    lock = threading.Lock()

    def one(i: int) -> None:
        nonlocal ok, refused
        try:
            ledger.charge(engine2, ag2, ["tax_income"], cost, f"c-{i}")
            with lock:
                ok += 1
        except Exception as e:  # BUDGET_EXHAUSTED
            if getattr(e, "code", "") != "BUDGET_EXHAUSTED":
                raise
            with lock:
                refused += 1

    t0 = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(n_conc)))
    conc_rate = n_conc / (time.perf_counter() - t0)
    spent = Fraction(ledger.status(engine2, ag2).as_json()["exact"]["epsilon_spent"])
    print(json.dumps({
        "bench": "policy",
        "decisions_per_s": round(decide_rate, 1),
        "agreement_load_per_s_floor": round(load_rate, 1),
        "decision_vs_load_ratio": round(load_rate / decide_rate, 2),
        "debits_per_s": round(debit_rate, 1),
        "raw_sqlite_update_per_s_floor": round(raw_rate, 1),
        "debit_vs_raw_ratio": round(raw_rate / debit_rate, 2),
        "concurrent_clients": 16,
        "concurrent_debits_per_s": round(conc_rate, 1),
        "concurrent_ok": ok, "concurrent_refused": refused,
        "overspent": spent > n_conc // 20,
        "spent_exact": str(spent),
    }))


if __name__ == "__main__":
    main()
