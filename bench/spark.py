"""Benchmark of DP SQL on the Spark engine (`sandbox.engine.spark`) against Spark's plain query and DuckDB.

On synthetic ``tax_income`` (default 1M rows; ``--quick`` 200k; 10M and 100M with ``--rows``), registered once
(one Parquet file read by both engines), for each standard query it reports medians over ``--runs`` interleaved
runs:

- ``spark_dp_ms``: ``sandbox.run`` on a `SparkWorker` (canonical SQL emitted for Spark, noise, release);
- ``spark_plain_ms``: the analyst's submitted SQL run as written by the same SparkSession over a temporary view
  of the same file (the non-private twin); ``spark_ratio`` = DP / plain;
- ``duckdb_dp_ms``: ``sandbox.run`` on the DuckDB worker (``--threads`` threads);
- ``duckdb_plain_ms``: the submitted SQL run as written by an in-process DuckDB connection with the same thread
  count over a view of the same file; ``duckdb_ratio`` = DP / plain;
- ``spark_vs_duckdb`` = Spark DP / DuckDB DP; ``spark_plain_vs_duckdb_plain`` = the two plain queries.

``spark.master`` is ``--master`` (default ``local[2]``), the driver's heap ``--driver-memory`` (default 4g; in
local mode the driver runs the executors too). ``--data DIR`` keeps the generated and registered data in ``DIR``
(``DIR/<rows>/``) and reuses it on the next run of the same size: generating and ingesting 100M rows takes longer
than querying them. One JSON line goes to stdout (the geometric means ``spark_ratio_geomean``,
``duckdb_ratio_geomean``, ``spark_vs_duckdb_geomean``, ``spark_plain_vs_duckdb_plain_geomean``); progress goes to
stderr. Spark's start-up (JVM, session) is reported once as ``spark_start_s`` and excluded from the per-query
figures; so are generation and ingest (``prepare_s``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from catalog._tables import metadata
from catalog.columns import DatasetSpec
from catalog.datagen import generate
from catalog.registry import Dataset, get, register
from catalog.storage import LocalStorage, bind_data_area
from catalog.store import make_engine
from sandbox import QueryWorker, TableView, prepare
from sandbox.engine.spark import SparkWorker, session
from sandbox.sql.service import run

GRANTED = frozenset(["district", "age", "gender", "industry", "monthly_income", "tax_paid",
                     "social_insurance_months"])
QUERIES = {
    "count_all": "SELECT COUNT(*) AS n FROM tax_income",
    "count_by_district": "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district",
    "avg_income_by_district_gender": "SELECT district, gender, AVG(monthly_income) AS a FROM tax_income "
                                     "GROUP BY district, gender",
    "filtered_sum": "SELECT SUM(tax_paid) AS t FROM tax_income WHERE age BETWEEN 30 AND 39 "
                    "AND industry IN ('manufacturing', 'finance')",
    "age_band": "SELECT FLOOR(age / 10) * 10 AS band, COUNT(*) AS n FROM tax_income GROUP BY band",
}


def _ms(fn: object) -> float:
    t = time.perf_counter()
    fn()  # type: ignore[operator]
    return (time.perf_counter() - t) * 1000


def _dataset(root: Path, rows: int) -> Dataset:
    """The registered ``tax_income`` of ``rows`` rows under ``root``: reused when a previous run left it there."""
    root.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{root / 'meta.db'}")
    metadata.create_all(engine)
    bind_data_area(engine, LocalStorage(root / "data"))  # the registered copies live under root/data
    ds = get(engine, "tax_income")
    if ds is not None and Path(ds.path).exists():
        print(f"reusing {ds.path}", file=sys.stderr)
        return ds
    incoming = root / "incoming"
    incoming.mkdir(exist_ok=True)
    print(f"generating {rows} rows", file=sys.stderr)
    gen = generate(incoming, rows=rows)
    spec = json.loads(gen.tax_income_spec.read_text())
    ds = register(engine, DatasetSpec.model_validate(spec), owner="owner", data_dir=root / "data",
                  import_roots=[incoming], max_source_bytes=1 << 36).dataset
    for f in incoming.iterdir():  # the registered copy is all the bench reads
        f.unlink()
    return ds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="200k rows, 3 runs")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--threads", type=int, default=2, help="DuckDB threads (match the Spark master's cores)")
    ap.add_argument("--driver-memory", default="4g")
    ap.add_argument("--data", type=Path, help="keep and reuse the generated, registered data here")
    args = ap.parse_args()
    rows, runs = (200_000, 3) if args.quick else (args.rows, args.runs)
    t0 = time.perf_counter()
    base = args.data if args.data else Path(tempfile.mkdtemp(prefix="veilbox-bench-spark-"))
    duck = _dataset(base / str(rows), rows)
    prepare_s = time.perf_counter() - t0
    tv = {"tax_income": TableView(duck, GRANTED)}
    os.environ.setdefault("PYSPARK_SUBMIT_ARGS", f"--driver-memory {args.driver_memory} pyspark-shell")
    t0 = time.perf_counter()
    spark = session(args.master)
    sw = SparkWorker({"tax_income": duck.path}, master=args.master, timeout_s=3600)
    sw.start()
    plain = spark.newSession()
    plain.read.parquet(str(duck.path)).createOrReplaceTempView("tax_income")
    start_s = time.perf_counter() - t0
    con = duckdb.connect()
    con.execute(f"SET threads = {args.threads}")
    quoted = str(duck.path).replace("'", "''")
    con.execute(f"CREATE VIEW tax_income AS SELECT * FROM read_parquet('{quoted}')")
    out: dict[str, dict[str, float]] = {}
    with QueryWorker({"tax_income": duck.path}, threads=args.threads, memory_limit="4GB", timeout_s=3600) as qw:
        for name, sql in QUERIES.items():
            plan = prepare(sql, tv, 1.0, min_group_units=5)
            run(plan, sw), run(plan, qw), plain.sql(sql).collect(), con.execute(sql).fetchall()  # warm-up
            sd, sp, dd, dp = [], [], [], []
            for _ in range(runs):
                sd.append(_ms(lambda p=plan: run(p, sw)))  # type: ignore[arg-type]
                sp.append(_ms(lambda s=sql: plain.sql(s).collect()))
                dd.append(_ms(lambda p=plan: run(p, qw)))
                dp.append(_ms(lambda s=sql: con.execute(s).fetchall()))
            m = {"spark_dp_ms": statistics.median(sd), "spark_plain_ms": statistics.median(sp),
                 "duckdb_dp_ms": statistics.median(dd), "duckdb_plain_ms": statistics.median(dp)}
            m["spark_ratio"] = m["spark_dp_ms"] / m["spark_plain_ms"]
            m["duckdb_ratio"] = m["duckdb_dp_ms"] / m["duckdb_plain_ms"]
            m["spark_vs_duckdb"] = m["spark_dp_ms"] / m["duckdb_dp_ms"]
            m["spark_plain_vs_duckdb_plain"] = m["spark_plain_ms"] / m["duckdb_plain_ms"]
            out[name] = {k: round(v, 2) for k, v in m.items()}
            print(name, out[name], file=sys.stderr)
    sw.stop()
    con.close()

    def geo(key: str) -> float:
        return round(math.exp(statistics.fmean(math.log(v[key]) for v in out.values())), 3)

    print(json.dumps({"bench": "spark", "rows": rows, "runs": runs, "master": args.master,
                      "duckdb_threads": args.threads, "driver_memory": args.driver_memory,
                      "prepare_s": round(prepare_s, 1), "spark_start_s": round(start_s, 1), "queries": out,
                      **{f"{k}_geomean": geo(k) for k in ("spark_ratio", "duckdb_ratio", "spark_vs_duckdb",
                                                          "spark_plain_vs_duckdb_plain")},
                      "loadavg": Path("/proc/loadavg").read_text().split()[:3]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
