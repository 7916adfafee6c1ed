"""The Spark engine for DP SQL: the vetted canonical plan, emitted as Spark SQL, run through PySpark.

A dataset declares ``engine: spark`` (`catalog.columns.DatasetSpec`); its queries are vetted, keyed, priced,
noised, suppressed and released by exactly the code paths of the DuckDB engine (`sandbox.sql.service.run`).
Only the step "execute the canonical SQL, return the pre-noise aggregate rows" differs: `SparkWorker` has the
`sandbox.engine.worker.QueryWorker` interface (``start``, ``execute(ExecRequest)``, ``stop``, ``alive``) and
`sandbox.jobs.query.QueryEngines` lends one for a Spark dataset.

What reaches Spark:

- Only SQL emitted by `spark_sql` from the canonical SQL of the rewriter (`sandbox.sql.rewrite`), parsed back
  into sqlglot's AST and generated in the ``spark`` dialect; never the submitted text. The emitted tree is
  checked before it leaves: one SELECT, tables only the dataset's view and the canonical CTEs, every function in
  `SPARK_FUNCS`. A construct whose Spark meaning differs from DuckDB's is rewritten (``dayofweek``,
  ``EXTRACT(dow)``, ``week``, numeric ``trunc``) or refused (`UNSUPPORTED`): `check_plan` raises
  ``QUERY_REJECTED`` rule ``engine.spark_unsupported`` naming them, at submission.
- The session reads only the dataset's registered Parquet file (a temporary view built with the DataFrame
  reader, per worker, in a session of its own), ``spark.sql.runSQLOnFiles`` is off (no ``parquet.`path```), no
  catalog, no UDF is ever registered.

Failure-freedom (as on DuckDB, `sandbox.sql.rewrite`): ANSI mode is off (``spark.sql.ansi.enabled=false``), so
a division by zero, an invalid cast or an arithmetic overflow gives NULL instead of an error, and every
``CAST(x AS T)`` of the canonical SQL becomes ``TRY_CAST(x AS T)`` (to an integer type: ``TRY_CAST(BROUND(x) AS
T)``, since DuckDB rounds half to even where Spark truncates); the ``TRY(...)`` wrappers are dropped (ANSI off and
``TRY_CAST`` already make their contents total). Per-unit bounding keeps the DuckDB rule: at most
``max_rows_per_unit`` rows per unit, chosen by ``ROW_NUMBER() OVER (PARTITION BY id ORDER BY xxhash64(<the
projected columns>, :salt))`` with the per-query secret salt as a named parameter (rows equal in every projected
column are interchangeable, so ties change nothing). A residual failure (an engine error, a cancelled job after
``timeout_s``, a result with more rows or other columns than the plan) raises `EngineFailure` with a generic
reason, and `sandbox.sql.service.run` releases over an empty input exactly as for DuckDB.

PySpark is the optional extra ``veilbox[spark]``; this module imports it only when a Spark worker starts.
`available()` tells whether it (and a Java runtime) is installed: without it a Spark dataset is refused at
registration (``INVALID_REQUEST``, reason ``engine.spark_unavailable``) and a query on one at submission
(``UNAVAILABLE``, same reason). ``spark_master`` comes from the settings (``VEILBOX_SPARK_MASTER``, default
``local[2]``); one SparkContext serves the process, so the first master started wins.
"""

from __future__ import annotations

import datetime as dt
import decimal
import importlib.util
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlglot import exp, parse
from sqlglot.errors import SqlglotError

from catalog.errors import QUERY_REJECTED, UNAVAILABLE, DomainError
from catalog.sealed import Sealer, is_sealed, memory_file
from sandbox.engine.worker import EngineFailure, ExecRequest

__all__ = ["DEFAULT_MASTER", "SparkUnsupported", "SparkWorker", "available", "check_plan", "require_available",
           "spark_sql"]

log = logging.getLogger("veilbox.sandbox.spark")
DEFAULT_MASTER = "local[2]"
UNAVAILABLE_REASON = "engine.spark_unavailable"
RULE = "engine.spark_unsupported"

#: Functions the emitted Spark SQL may call (sqlglot node types). Anything else is refused, named.
SPARK_FUNCS: tuple[type[exp.Expr], ...] = (
    exp.Count, exp.Sum, exp.Coalesce, exp.Cast, exp.TryCast, exp.Case, exp.If, exp.Floor, exp.Ceil, exp.Round,
    exp.Abs, exp.Upper, exp.Lower, exp.Substring, exp.Year, exp.Month, exp.Day, exp.Quarter, exp.DayOfWeek,
    exp.WeekOfYear, exp.Least, exp.Greatest, exp.RowNumber, exp.Window, exp.Extract, exp.Avg, exp.And, exp.Or,
    exp.Not, exp.Like, exp.In, exp.Between, exp.Is, exp.TsOrDsToDate,
)
#: Constructs whose Spark result differs from DuckDB's (measured) and that are not rewritten.
UNSUPPORTED: dict[type[exp.Expr], str] = {
    exp.DateDiff: "date_diff", exp.Quantile: "quantile", exp.PercentileCont: "quantile_cont",
    exp.ApproxQuantile: "approx_quantile",
    exp.IntDiv: "integer division (//)",
}
_EXTRACT_OK = {"YEAR", "MONTH", "DAY", "QUARTER", "DOW", "DAYOFWEEK", "WEEK"}
_START_LOCK = threading.Lock()
_SESSION: Any = None


class SparkUnsupported(ValueError):
    """The canonical SQL uses constructs that do not mean the same on Spark; ``names`` lists them."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names


def available() -> bool:
    """True when PySpark and a Java runtime are installed (the ``veilbox[spark]`` extra)."""
    java = shutil.which("java") or (os.environ.get("JAVA_HOME") and Path(os.environ["JAVA_HOME"], "bin", "java"))
    return importlib.util.find_spec("pyspark") is not None and bool(java)


def require_available() -> None:
    """``UNAVAILABLE`` (reason ``engine.spark_unavailable``) when the Spark engine is not installed."""
    if not available():
        raise DomainError(UNAVAILABLE, "the Spark engine is not installed", [{"reason": UNAVAILABLE_REASON}])


def _name(node: exp.Expr) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return str(node.key).lower()


def _dow(arg: exp.Expr) -> exp.Expr:
    # DuckDB: Sunday = 0 … Saturday = 6; Spark's DAYOFWEEK: Sunday = 1 … Saturday = 7.
    return exp.Paren(this=exp.Sub(this=exp.DayOfWeek(this=arg), expression=exp.Literal.number(1)))


_INT_TYPES = (exp.DataType.Type.TINYINT, exp.DataType.Type.SMALLINT, exp.DataType.Type.INT,
              exp.DataType.Type.BIGINT)


def _cast(node: exp.Cast) -> exp.Expr:
    """Every cast becomes ``TRY_CAST``; a cast to an integer type rounds half to even first, as DuckDB's
    does (Spark's truncates toward zero)."""
    to = node.args["to"]
    arg = node.this
    if isinstance(to, exp.DataType) and to.this in _INT_TYPES:
        arg = exp.Anonymous(this="BROUND", expressions=[arg])
    return exp.TryCast(this=arg, to=to, safe=True)


def _rewrite(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.DayOfWeek) and not node.meta.get("spark"):
        out = _dow(node.this)
        out.this.this.meta["spark"] = True
        return out
    if isinstance(node, exp.Week) or (isinstance(node, exp.Anonymous) and str(node.name).lower() == "week"):
        arg = node.this if isinstance(node, exp.Week) else node.expressions[0]
        return exp.WeekOfYear(this=arg)
    if isinstance(node, exp.Extract):
        part = str(node.this.name).upper()
        if part in ("DOW", "DAYOFWEEK"):
            return _dow(node.expression)
        if part == "WEEK":
            return exp.WeekOfYear(this=node.expression)
    if isinstance(node, exp.Trunc) and node.args.get("decimals") is None:
        # numeric truncation toward zero (Spark's TRUNC is for dates)
        x = node.this
        return exp.If(this=exp.GTE(this=x.copy(), expression=exp.Literal.number(0)),
                      true=exp.Floor(this=x.copy()), false=exp.Ceil(this=x.copy()))
    return node


def _salted_order(rows: exp.Select) -> None:
    """Replace ``hash(id, rowid, $salt)`` in the bounding window by ``xxhash64(<projected columns>, :salt)``."""
    cols = [e.copy() for e in rows.expressions if isinstance(e, exp.Column)]
    for h in list(rows.find_all(exp.Anonymous)):
        if str(h.name).lower() == "hash":
            h.replace(exp.Anonymous(this="xxhash64", expressions=[*cols, exp.Placeholder(this="salt")]))


def _unlisted(node: exp.Expr) -> bool:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower() not in ("xxhash64", "bround")
    return isinstance(node, exp.Func) and not isinstance(node, SPARK_FUNCS)


def _check(tree: exp.Expr, allowed_tables: set[str]) -> list[str]:
    bad: list[str] = []
    if not isinstance(tree, exp.Select):
        return ["statement"]
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)} | {"_t"}
    for node in tree.walk():
        if isinstance(node, tuple(UNSUPPORTED)):
            bad.append(UNSUPPORTED[type(node)])
        elif _unlisted(node):
            bad.append(_name(node))
        elif isinstance(node, exp.Extract) and str(node.this.name).upper() not in _EXTRACT_OK:
            bad.append(f"extract({str(node.this.name).lower()})")
        elif isinstance(node, exp.Table) and node.name not in ctes and node.name not in allowed_tables:
            bad.append("table")
        elif isinstance(node, (exp.Command, exp.Create, exp.Insert, exp.Drop, exp.Set)):
            bad.append("statement")
    return sorted(set(bad))


def spark_sql(canonical_sql: str, table: str) -> str:
    """Spark SQL for the rewriter's canonical SQL over ``table``; `SparkUnsupported` names what cannot run.

    The input is the canonical SQL of a `sandbox.sql.QueryPlan` (DuckDB dialect, generated by the rewriter from
    the vetted AST), never submitted text. Deterministic: the plan check and the run emit the same SQL."""
    try:
        trees = parse(canonical_sql, read="duckdb")
    except SqlglotError:
        raise SparkUnsupported(["statement"]) from None
    if len(trees) != 1 or trees[0] is None:
        raise SparkUnsupported(["statement"])
    tree = trees[0]
    bad = sorted({UNSUPPORTED[type(n)] for n in tree.walk() if isinstance(n, tuple(UNSUPPORTED))})
    if bad:
        raise SparkUnsupported(bad)
    for t in list(tree.find_all(exp.Try)):
        t.replace(t.this)
    for c in list(tree.find_all(exp.Cast)):  # innermost first is not needed: each is rebuilt around its child
        c.replace(_cast(c))
    tree = tree.transform(_rewrite)
    for sel in tree.find_all(exp.Select):
        if sel.args.get("qualify") is not None:
            _salted_order(sel)
    text = tree.sql(dialect="spark", comments=False)
    try:
        out = parse(text, read="spark")
    except SqlglotError:
        raise SparkUnsupported(["statement"]) from None
    if len(out) != 1 or out[0] is None:
        raise SparkUnsupported(["statement"])
    bad = _check(out[0], {table})
    if bad:
        raise SparkUnsupported(bad)
    return text


def check_plan(canonical_sql: str, unbounded_sql: str, table: str) -> None:
    """``QUERY_REJECTED`` (rule ``engine.spark_unsupported``, naming the constructs) when the plan cannot run on
    Spark with the same meaning as on DuckDB."""
    names: set[str] = set()
    for sql in (canonical_sql, unbounded_sql):
        try:
            spark_sql(sql, table)
        except SparkUnsupported as e:
            names.update(e.names)
    if names:
        raise DomainError(QUERY_REJECTED, "the query uses constructs the Spark engine does not run identically",
                          [{"rule": RULE, "at": ", ".join(sorted(names)),
                            "hint": "these functions differ between DuckDB and Spark; express the question "
                                    "without them"}])


def session(master: str = DEFAULT_MASTER) -> Any:
    """The process's SparkSession (started on first use; its master is the first one asked for)."""
    global _SESSION
    with _START_LOCK:
        if _SESSION is not None:
            return _SESSION
        from pyspark.sql import SparkSession

        builder = SparkSession.builder
        if master.startswith("local"):  # one process: the driver listens on loopback only
            builder = builder.config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
        spark = (builder.master(master).appName("veilbox-dp-sql")
                 .config("spark.sql.ansi.enabled", "false")
                 .config("spark.sql.runSQLOnFiles", "false")
                 .config("spark.sql.catalogImplementation", "in-memory")
                 .config("spark.sql.session.timeZone", "UTC")
                 .config("spark.sql.shuffle.partitions", "4")
                 .config("spark.sql.adaptive.enabled", "true")
                 .config("spark.ui.enabled", "false")
                 .config("spark.ui.showConsoleProgress", "false")
                 .getOrCreate())
        spark.sparkContext.setLogLevel("ERROR")
        _SESSION = spark
        return spark


def _scalar(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | str | float):
        return v
    if isinstance(v, decimal.Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, dt.date | dt.datetime):
        return v.isoformat()
    raise TypeError("non-scalar value in a result")


class SparkWorker:
    """A Spark "worker" over one dataset: a session of its own (shared SparkContext) whose only table is a
    temporary view of the registered Parquet file. Same interface as `sandbox.engine.worker.QueryWorker`."""

    def __init__(self, data_paths: Mapping[str, Path | str], master: str = DEFAULT_MASTER,
                 timeout_s: float = 30.0, sealer: Sealer | None = None) -> None:
        if len(data_paths) != 1:
            raise ValueError("a Spark worker serves exactly one dataset")
        ((self.name, path),) = data_paths.items()
        self.path = str(path)
        self.sealer = sealer
        self._memfd: int | None = None
        self.master = master
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._session: Any = None
        self._bounded: dict[tuple[str, str, int], bool] = {}

    @property
    def alive(self) -> bool:
        """True once started (the shared context is running)."""
        if self._session is None:
            return False
        try:
            return not self._session.sparkContext._jsc.sc().isStopped()
        except Exception:
            return False

    pid = None

    def __enter__(self) -> SparkWorker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the session and its view; `EngineFailure` (``unavailable``) if Spark cannot start."""
        with self._lock:
            if self.alive:
                return
            try:
                s = session(self.master).newSession()
                s.read.parquet(self._readable()).createOrReplaceTempView(self.name)
            except Exception as e:
                log.error("spark worker failed to start: %s", type(e).__name__)
                self._session = None
                self._close_memfd()
                raise EngineFailure("unavailable") from None
            self._session = s
            self._bounded.clear()

    def _readable(self) -> str:
        """The path Spark reads: the registered file, or — sealed at rest (`catalog.sealed`) — an anonymous memory
        file of this process holding its plaintext (``/proc/<pid>/fd/<fd>``, sealed against writes; the JVM this
        process started reads it; closed when the worker stops)."""
        if not is_sealed(Path(self.path)):
            return self.path
        if self.sealer is None:
            raise LookupError("a sealed dataset and no key service")
        self._close_memfd()
        self._memfd = memory_file(f"veilbox-{self.name}", self.sealer.read_file(Path(self.path)))
        return f"file:///proc/{os.getpid()}/fd/{self._memfd}"

    def _close_memfd(self) -> None:
        fd, self._memfd = self._memfd, None
        if fd is not None:
            os.close(fd)

    def stop(self) -> None:
        """Drop the view and forget the session (the shared context stays for other datasets)."""
        with self._lock:
            self._close_memfd()
            s, self._session = self._session, None
            if s is not None:
                try:
                    s.catalog.dropTempView(self.name)
                except Exception as e:  # the context is gone already: nothing left to drop
                    log.debug("spark view not dropped: %s", type(e).__name__)

    def _run(self, sql: str, params: dict[str, str] | None) -> tuple[list[Any], int]:
        s = self._session
        sc = s.sparkContext
        group = f"veilbox-{uuid.uuid4().hex}"
        sc.setJobGroup(group, "dp sql", interruptOnCancel=True)
        timed_out = threading.Event()

        def cancel() -> None:
            timed_out.set()
            sc.cancelJobGroup(group)

        timer = threading.Timer(self.timeout_s, cancel)
        timer.start()
        try:
            df = s.sql(sql, args=params) if params else s.sql(sql)
            rows = df.collect()
            return rows, len(df.columns)
        except Exception:
            if timed_out.is_set():
                raise EngineFailure("timeout") from None
            raise
        finally:
            timer.cancel()
            sc.setLocalProperty("spark.jobGroup.id", None)

    def execute(self, request: ExecRequest) -> list[list[Any]]:
        """The rows of ``request`` (canonical SQL, emitted for Spark); `EngineFailure` with a generic reason."""
        with self._lock:
            if self._session is None:
                raise EngineFailure("unavailable")
            try:
                sql, params = spark_sql(request.sql, self.name), dict(request.params)
                if request.bound_check is not None and request.unbounded_sql is not None:
                    table, unit, m = request.bound_check
                    key = (table, unit, int(m))
                    if key not in self._bounded:
                        check, _ = self._run(
                            f"SELECT COALESCE(MAX(c), 0) FROM (SELECT COUNT(*) AS c FROM `{self.name}` "
                            f"GROUP BY `{unit}`)", None)
                        self._bounded[key] = int(check[0][0]) <= int(m)
                    if self._bounded[key]:
                        sql, params = spark_sql(request.unbounded_sql, self.name), {}
                rows, ncols = self._run(sql, params)
                if len(rows) > request.max_rows or ncols != request.ncols:
                    log.error("result check failed: %d rows (max %d), %d columns", len(rows), request.max_rows,
                              ncols)
                    raise EngineFailure("result_check")
                return [[_scalar(v) for v in r] for r in rows]
            except EngineFailure:
                raise
            except TypeError:
                log.error("result check failed: non-scalar value")
                raise EngineFailure("result_check") from None
            except Exception as e:
                log.error("engine error %s", type(e).__name__)
                raise EngineFailure("engine") from None
