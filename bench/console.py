"""Console benchmark: server-side render time of the pages people wait on, against the JSON API behind them.

A fresh home with 10 000 audit entries (real appends through `AuditLog`, durable) and 200 jobs waiting for the
owner. Measured over a real loopback gateway with a signed-in console session: the owner's jobs page vs
``GET /v1/jobs``; the regulator's audit page (first page of 100 and a filtered page) vs ``GET /v1/audit``; the
chain verification page vs ``GET /v1/audit/verify``; the monthly report (HTML and PDF) vs its JSON. Medians of
``--repeat`` runs (a third of them for the pages that read the whole log). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENTRIES = 10_000
JOBS = 200


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def median_ms(call: Callable[[], Any], repeat: int) -> float:
    call()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = call()
        times.append((time.perf_counter() - t0) * 1000)
        assert getattr(r, "status_code", 200) == 200, getattr(r, "text", "")[:300]
    return round(statistics.median(times), 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    import datetime as dt

    import httpx

    from catalog.datagen import generate
    from gateway.audit import AuditEvent
    from gateway.context import init_home, open_context
    from gateway.server import BackgroundServer
    from gateway.settings import Settings
    from veilbox.client import Client

    root = Path(tempfile.mkdtemp(prefix="veilbox-bench-console-"))
    data = generate(root / "incoming" / "tax", rows=2000, seed=3)
    settings = Settings(home=root / "home", import_roots=[root / "incoming"], latency_bucket_ms=0, env="test",
                        worker=False)
    admin_token = init_home(settings)
    ctx = open_context(settings)
    out: dict[str, Any] = {"bench": "console", "audit_entries": ENTRIES, "pending_jobs": JOBS, "repeat": args.repeat}
    with BackgroundServer(ctx) as srv:
        admin = Client(srv.url, admin_token, timeout=600)
        tokens = {role: admin.create_principal(name, role)["token"] for name, role in
                  (("tax", "owner"), ("lab", "operator"), ("watch", "regulator"))}
        owner, operator = admin.with_token(tokens["owner"]), admin.with_token(tokens["operator"])
        regulator = admin.with_token(tokens["regulator"])
        owner.register_dataset(json.loads(data.tax_income_spec.read_text()))
        ag = owner.propose_agreement({
            "title": "bench", "grantee": "lab", "datasets": ["tax_income"],
            "columns": {"tax_income": ["district", "age"]}, "purposes": ["statistics"], "job_kinds": ["query"],
            "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2036-01-01T00:00:00Z", "budget": {"epsilon": 1000},
            "min_group_units": 1, "approval": "owner_each_job", "quotas": {"calls_per_day": 10**8,
                                                                            "jobs_per_day": 10**6}})
        operator.accept_agreement(ag["id"])
        log(f"{JOBS} pending jobs, {ENTRIES} audit entries …")
        for i in range(JOBS):
            operator.query(ag["id"], f"SELECT district, COUNT(*) AS n FROM tax_income WHERE age > {i % 80} "
                                     "GROUP BY district", 0.01)
        last = ctx.audit.entries(0, 10**9)[1]
        for i in range(max(0, ENTRIES - last)):
            ctx.audit.append(AuditEvent(actor="lab", role="operator", action="query.run", agreement_id=ag["id"],
                                        dataset="tax_income", details={"bench": i}))

        def web(token: str) -> httpx.Client:
            c = httpx.Client(base_url=srv.url, timeout=600)
            csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/console/login").text)
            assert csrf is not None
            c.post("/console/login", data={"token": token, "csrf": csrf.group(1)})
            return c

        ow, rg = web(tokens["owner"]), web(tokens["regulator"])
        month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
        pairs: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
            "owner_jobs": (lambda: ow.get("/console/jobs", params={"state": "pending_approval"}),
                           lambda: owner.jobs("pending_approval")),
            "audit_first_page": (lambda: rg.get("/console/audit"), lambda: regulator.audit(0, 100)),
            "audit_filtered": (lambda: rg.get("/console/audit", params={"action": "query.run", "actor": "lab"}),
                               lambda: regulator.audit(0, 100, action="query.run", actor="lab")),
            "chain_verify": (lambda: rg.get("/console/audit/verify"), lambda: regulator.audit_verify()),
            "monthly_report": (lambda: rg.get("/console/reports", params={"month": month}),
                               lambda: regulator.audit_report(month)),
        }
        figures: dict[str, Any] = {}
        heavy = max(3, args.repeat // 3)  # verification and reports read the whole log: fewer runs keep this < 60 s
        for name, (page, api) in pairs.items():
            log(name, "…")
            n = heavy if name in ("chain_verify", "monthly_report") else args.repeat
            p_ms, a_ms = median_ms(page, n), median_ms(api, n)
            figures[name] = {"console_ms": p_ms, "api_ms": a_ms, "console_x_api": round(p_ms / a_ms, 2)}
        figures["monthly_report_pdf_ms"] = median_ms(lambda: rg.get(f"/console/reports/{month}.pdf"), heavy)
        out["figures"] = figures
    ctx.close()
    print(json.dumps(out, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
