"""Custom-code sandbox benchmark: start-up overhead of an empty function, and a pyarrow aggregate over the
synthetic ``tax_income`` run in the sandbox vs the same function in-process (ratio).

The sandbox time includes everything a job pays: source checks, staging a private copy of the input,
bubblewrap + namespaces + seccomp + privilege drop, interpreter start, the isolation self-check, reading the
Parquet file, and the parent's output validation. Prints one JSON line on stdout; progress on stderr.
`--rows` (default 1M), `--repeat` (default 5, medians reported), `--quick` (100k rows, 3 repeats).
Needs root and bubblewrap (the runner refuses otherwise).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from catalog.datagen import generate  # noqa: E402
from sandbox.coderun import CodeResult, Limits, run_code  # noqa: E402

EMPTY = "def main(inputs):\n    return None\n"
AGGREGATE = """
import pyarrow.compute as pc

def main(inputs):
    t = inputs["tax_income"]
    g = t.group_by("district").aggregate([("monthly_income", "mean"), ("monthly_income", "count")])
    return {"overall_mean": pc.mean(t["monthly_income"]).as_py(),
            "by_district": dict(zip(g["district"].to_pylist(), g["monthly_income_mean"].to_pylist()))}
"""


def _median_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, last = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        last = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), last


def _in_process(path: Path) -> Any:
    """The same function, the way it would run without a sandbox: same file, same pyarrow code."""
    import pyarrow.parquet as pq

    namespace: dict[str, Any] = {}
    exec(AGGREGATE, namespace)  # our own fixed source
    return namespace["main"]({"tax_income": pq.read_table(path, memory_map=False)})


def _close(a: Any, b: Any) -> bool:
    """Equal up to float summation order (threaded aggregation adds in a different order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9)
    return bool(a == b)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rows, repeat = (100_000, 3) if args.quick else (args.rows, args.repeat)
    limits = Limits(wall_seconds=120, cpu_seconds=120, memory_bytes=4 << 30)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"generating {rows} rows…", file=sys.stderr)
        data = generate(Path(tmp), rows=rows)
        path = data.tax_income

        def sandboxed(source: str) -> CodeResult:
            out = run_code(source, "main", {"tax_income": path}, "json", 1 << 20, limits)
            if not isinstance(out, CodeResult):
                raise SystemExit(f"sandbox run failed: {out.reason}")
            return out

        sandboxed(EMPTY)  # warm the page cache and the runtime discovery
        print("empty function…", file=sys.stderr)
        startup_s, _ = _median_time(lambda: sandboxed(EMPTY), repeat)
        print("aggregate in the sandbox…", file=sys.stderr)
        sandbox_s, boxed = _median_time(lambda: sandboxed(AGGREGATE), repeat)
        print("aggregate in-process…", file=sys.stderr)
        inproc_s, plain = _median_time(lambda: _in_process(path), repeat)
        same = _close(boxed.value(), json.loads(json.dumps(plain)))
        input_mib = round(path.stat().st_size / 2**20, 1)
    print(json.dumps({
        "bench": "coderun",
        "rows": rows,
        "input_mib": input_mib,
        "startup_empty_s": round(startup_s, 4),
        "aggregate_sandbox_s": round(sandbox_s, 4),
        "aggregate_inprocess_s": round(inproc_s, 4),
        "ratio": round(sandbox_s / inproc_s, 2),
        "results_equal": same,
        "repeat": repeat,
    }))


if __name__ == "__main__":
    main()
