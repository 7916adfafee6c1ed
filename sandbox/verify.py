"""Verification predicates (核验): vetted like SQL, evaluated on the locked DuckDB worker, answered yes/no.

A verification product's predicate is a boolean expression over one row of its dataset, with ``:named``
parameters declared by type (``number``, ``integer``, ``string``), or the word ``exists``. Examples::

    monthly_income >= :threshold
    abs(monthly_income - :declared) <= :tolerance * monthly_income
    social_insurance_months >= :n AND district = :district

Guarantee: `vet_predicate` parses the text with sqlglot (DuckDB dialect) and accepts only an allow-list —
columns of role ``dimension`` or ``measure``, declared parameters, numeric and string literals, ``TRUE``/
``FALSE``, ``+ - *``, ``/`` by a non-zero literal, unary minus, ``abs``, the six comparisons, ``BETWEEN``,
``AND``/``OR``/``NOT`` and parentheses — with types checked (arithmetic on numbers only, strings compared
only for (in)equality, a boolean at the top); anything else (other functions, subqueries, casts, ``IS``,
``LIKE``, the subject column, ``id``/``join_key``/``never_output`` columns, undeclared or unused parameters)
raises ``QUERY_REJECTED`` listing *every* violation as ``{"rule", "at", "hint"}``. The submitted text is never
run: `VettedPredicate.condition_sql` is re-emitted node by node, numeric columns and parameters as
``CAST(… AS DOUBLE)`` (no overflow or cast errors that could depend on data), parameters bound by name.
The literal rule, the non-zero-divisor rule, the comparison and arithmetic allow-lists and the column-kind map are
those of SQL vetting (`sandbox.sql.rules.expressions`), applied with this vetter's own limits
(`PREDICATE_LITERALS`).

Canonical keys: a check's subject and parameters have one spelling each, and that spelling is what the statement
compares, the quotas meter, the audit entry hashes and the receipt signs. `canonical_subject` accepts for an
integer subject column a JSON integer or its decimal text without ``+``, leading zeros, spaces, fraction or
exponent (``7``/``"7"``, never ``"007"``, ``"7.0"``, ``"-0"``, ``"７"``), and for a string column a string
matching `SUBJECT_RE` exactly (ASCII, compared byte for byte, never trimmed or case-folded); anything else is
``INVALID_REQUEST`` before anything is metered. `canonical_subjects` also refuses a batch that names a subject
twice. `canonical_params` maps ``8000``, ``8000.0``, ``"8000"`` and ``"8e3"`` to one value (``-0.0`` to 0) and
refuses bools, NaN, infinities, magnitudes above 2^53 and non-JSON-number text; `bind_canonical` binds exactly
those values.

Evaluation (`check_subject`) runs one canonical statement on the dataset's locked worker process
(`sandbox.engine.QueryWorker`)::

    SELECT COUNT(*) FILTER (WHERE <condition>) FROM <dataset> WHERE <subject column> = $subject

and answers ``count > 0``: a subject with several rows passes when any of its rows does; an unknown subject,
a NULL comparison and a failing row all answer ``false``, by the same statement and the same work, so the
answer (and, with the gateway's latency buckets, its timing) cannot tell an unknown subject from a "no".

Encrypted form: a predicate that is exactly ``column >= :param`` or ``column <= :param`` (either order) over
a numeric column with declared bounds has a `Threshold`; `threshold_values` returns, per subject, the
integer the BFV masked sign compares (``mpc.he.evaluate_masked_sign``) so that an unknown subject reads
"false" whatever the bank's threshold within the declared bounds (see `Threshold`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import sqlglot
from sqlglot import exp

from catalog.columns import Kind, Role
from catalog.errors import DomainError, invalid
from catalog.registry import Dataset
from sandbox.engine.hardening import quote_ident
from sandbox.engine.worker import ExecRequest
from sandbox.sql.rules.expressions import (
    ARITHMETIC_SQL,
    COMPARISON_SQL,
    KIND_OF,
    LiteralRules,
    nonzero_literal,
    read_literal,
    rejection,
)

__all__ = ["EXISTS", "INT_SUBJECT_RE", "SUBJECT_RE", "Executor", "Threshold", "VettedPredicate", "bind_params",
           "canonical_params", "canonical_subject", "canonical_subjects", "check_subject", "masked_input", "sign_box",
           "threshold_values", "vet_predicate"]

EXISTS = "exists"
MAX_NODES = 64
MAX_DEPTH = 16
MAX_NUMBER = 2.0**53
MAX_STRING = 200
#: What a string subject identifier may look like (national ID numbers, person ids, enterprise codes): ASCII
#: only, so there is no Unicode normalisation question; matched with ``fullmatch`` (no trailing newline).
SUBJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$", re.ASCII)
#: The one decimal spelling of an integer subject: ASCII digits, no ``+``, no leading zeros, no ``-0``.
INT_SUBJECT_RE = re.compile(r"-?[1-9][0-9]{0,18}|0", re.ASCII)
INT64 = (-(2**63), 2**63 - 1)
#: A number written as text in a check's parameters: the JSON number grammar, ASCII only.
NUMBER_TEXT_RE = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?", re.ASCII)
MAX_NUMBER_TEXT = 64
PREDICATE_ROLES = frozenset({Role.DIMENSION, Role.MEASURE})

Type = Literal["num", "str", "bool"]

#: The literal rule of `sandbox.sql.rules.expressions` with a predicate's limits: numbers are read as the
#: DOUBLE they are bound as, finite and at most 2^53 in magnitude; strings at most ``MAX_STRING`` characters.
PREDICATE_LITERALS = LiteralRules(max_chars=MAX_STRING, max_abs=MAX_NUMBER, as_double=True)
_PARAM_SQL_TYPE = {"number": "num", "integer": "num", "string": "str"}


@dataclass(frozen=True)
class Threshold:
    """The encrypted form's shape: ``column >= :param`` (``op = ">="``) or ``column <= :param``.

    ``lower``/``upper`` are the column's declared bounds rounded outwards to integers: the bank's thresholds
    must lie in ``[lower, upper]`` (the masked sign's declared threshold range).
    """

    column: str
    op: Literal[">=", "<="]
    param: str
    lower: int
    upper: int

    def public(self) -> dict[str, Any]:
        """What the bank is told (JSON): the column, comparison, parameter, threshold range and what to encrypt."""
        return {"column": self.column, "op": self.op, "param": self.param, "threshold_bounds": [self.lower,
                                                                                                self.upper],
                "bank_encrypts": "t" if self.op == ">=" else "-t"}


@dataclass(frozen=True)
class VettedPredicate:
    """A predicate that passed vetting, with its canonical SQL condition (parameters as ``$p_<name>``)."""

    dataset: str
    subject_column: str
    subject_kind: Kind
    columns: frozenset[str]
    params: Mapping[str, str]
    condition_sql: str
    canonical: str
    threshold: Threshold | None

    def public(self) -> dict[str, Any]:
        """The verification's public form (JSON): canonical predicate, columns and encrypted form if any."""
        return {"canonical_predicate": self.canonical, "columns": sorted(self.columns),
                "encrypted_form": self.threshold.public() if self.threshold is not None else None}


class _Vetter:
    def __init__(self, ds: Dataset, subject_column: str, params: Mapping[str, str]) -> None:
        self.ds, self.subject, self.params = ds, subject_column, params
        self.violations: list[dict[str, str]] = []
        self.columns: set[str] = set()
        self.used: set[str] = set()

    def fail(self, rule: str, node: exp.Expression | str, hint: str) -> None:
        at = node if isinstance(node, str) else node.sql(dialect="duckdb")[:120]
        v = {"rule": rule, "at": at, "hint": hint}
        if v not in self.violations:
            self.violations.append(v)

    def emit(self, node: exp.Expression, depth: int = 0) -> tuple[str, Type | None]:
        """(canonical SQL, type) of ``node``; records violations and returns a placeholder when it fails."""
        if depth > MAX_DEPTH:
            self.fail("predicate.too_complex", node, f"nest at most {MAX_DEPTH} levels")
            return "NULL", None
        if isinstance(node, exp.Paren):
            sql, t = self.emit(node.this, depth + 1)
            return f"({sql})", t
        if isinstance(node, exp.Column):
            return self._column(node)
        if isinstance(node, exp.Placeholder):
            return self._param(node)
        if isinstance(node, exp.Literal):
            return self._literal(node)
        if isinstance(node, exp.Boolean):
            return ("TRUE" if node.this else "FALSE"), "bool"
        if isinstance(node, exp.Neg):
            sql, t = self.emit(node.this, depth + 1)
            self._expect(node, t, "num", "unary minus applies to numbers")
            return f"(-{sql})", "num"
        if isinstance(node, exp.Abs):
            sql, t = self.emit(node.this, depth + 1)
            self._expect(node, t, "num", "abs() applies to numbers")
            return f"abs({sql})", "num"
        if type(node) in ARITHMETIC_SQL:
            return self._arithmetic(node, depth)
        if type(node) in COMPARISON_SQL:
            return self._comparison(node, depth)
        if isinstance(node, exp.Between):
            return self._between(node, depth)
        if isinstance(node, exp.And | exp.Or):
            left, lt = self.emit(node.this, depth + 1)
            right, rt = self.emit(node.expression, depth + 1)
            self._expect(node.this, lt, "bool", "AND/OR combine conditions")
            self._expect(node.expression, rt, "bool", "AND/OR combine conditions")
            return f"({left} {'AND' if isinstance(node, exp.And) else 'OR'} {right})", "bool"
        if isinstance(node, exp.Not):
            sql, t = self.emit(node.this, depth + 1)
            self._expect(node.this, t, "bool", "NOT negates a condition")
            return f"(NOT {sql})", "bool"
        if isinstance(node, exp.Subquery | exp.Select | exp.Exists | exp.Query):
            self.fail("subquery", node, "a predicate reads one row: no subqueries")
        elif isinstance(node, exp.Func):
            self.fail("function.not_allowed", node, "only abs() is allowed; use + - * / and comparisons")
        else:
            self.fail("node.not_allowed", node, f"{type(node).__name__} is not allowed in a predicate; use "
                                                "columns, :params, literals, + - * /, abs(), comparisons, "
                                                "BETWEEN, AND/OR/NOT")
        return "NULL", None

    def _expect(self, node: exp.Expression, got: Type | None, want: Type, hint: str) -> None:
        if got is not None and got != want:
            self.fail("type.mismatch", node, hint)

    def _column(self, node: exp.Column) -> tuple[str, Type | None]:
        name = node.name
        if node.table or not isinstance(node.this, exp.Identifier):
            self.fail("column.qualified", node, "name columns of the product's dataset without a table")
            return "NULL", None
        info = self.ds.columns.get(name)
        if info is None:
            self.fail("column.unknown", node, f"the dataset {self.ds.name} has no such column")
            return "NULL", None
        if name == self.subject:
            self.fail("column.subject", node, "the subject column keys the row; it cannot appear in the predicate")
            return "NULL", None
        if info.role not in PREDICATE_ROLES:
            self.fail("column.role", node, f"columns of role {info.role.value} cannot be used in a predicate "
                                           "(only dimension and measure)")
            return "NULL", None
        self.columns.add(name)
        kind = KIND_OF.get(info.kind)
        if kind == "num":
            return f"CAST({quote_ident(name)} AS DOUBLE)", "num"
        if kind == "str" or kind == "bool":
            return quote_ident(name), kind
        self.fail("column.type", node, f"columns of kind {info.kind.value} cannot be used in a predicate")
        return "NULL", None

    def _param(self, node: exp.Placeholder) -> tuple[str, Type | None]:
        name = str(node.this or "")
        declared = self.params.get(name)
        if not name or declared is None:
            self.fail("param.undeclared", node, "declare every :parameter in params with its type "
                                                "(number, integer or string)")
            return "NULL", None
        self.used.add(name)
        t: Type = "num" if _PARAM_SQL_TYPE[declared] == "num" else "str"
        return (f"CAST($p_{name} AS DOUBLE)" if t == "num" else f"CAST($p_{name} AS VARCHAR)"), t

    def _literal(self, node: exp.Literal) -> tuple[str, Type | None]:
        read = read_literal(node, PREDICATE_LITERALS)
        if read.error == "too_long":
            self.fail("literal.too_long", node, f"string literals hold at most {MAX_STRING} characters")
            return "NULL", None
        if read.error == "invalid":
            self.fail("literal.invalid", node, "numbers are written as decimals")
            return "NULL", None
        if read.error == "range":
            self.fail("literal.range", node, f"numbers are finite with magnitude at most {MAX_NUMBER:g}")
            return "NULL", None
        if isinstance(read.value, str):
            return "'" + read.value.replace("'", "''") + "'", "str"
        assert isinstance(read.value, float)
        return f"CAST({read.value!r} AS DOUBLE)", "num"

    def _arithmetic(self, node: exp.Expression, depth: int) -> tuple[str, Type | None]:
        left, lt = self.emit(node.this, depth + 1)
        right, rt = self.emit(node.expression, depth + 1)
        self._expect(node.this, lt, "num", "arithmetic applies to numbers")
        self._expect(node.expression, rt, "num", "arithmetic applies to numbers")
        if isinstance(node, exp.Div) and not nonzero_literal(node.expression, as_double=True):
            self.fail("division.divisor", node, "divide only by a non-zero number literal")
        return f"({left} {ARITHMETIC_SQL[type(node)]} {right})", "num"

    def _comparison(self, node: exp.Expression, depth: int) -> tuple[str, Type | None]:
        left, lt = self.emit(node.this, depth + 1)
        right, rt = self.emit(node.expression, depth + 1)
        op = COMPARISON_SQL[type(node)]
        if lt is not None and rt is not None:
            if lt != rt or lt == "bool":
                self.fail("type.mismatch", node, "compare numbers with numbers and strings with strings")
            elif lt == "str" and op not in ("=", "<>"):
                self.fail("type.mismatch", node, "strings are compared only with = and <>")
        return f"({left} {op} {right})", "bool"

    def _between(self, node: exp.Between, depth: int) -> tuple[str, Type | None]:
        value, vt = self.emit(node.this, depth + 1)
        low, lo_t = self.emit(node.args["low"], depth + 1)
        high, hi_t = self.emit(node.args["high"], depth + 1)
        for t, part in ((vt, node.this), (lo_t, node.args["low"]), (hi_t, node.args["high"])):
            self._expect(part, t, "num", "BETWEEN compares numbers")
        return f"({value} >= {low} AND {value} <= {high})", "bool"


def _reject(violations: list[dict[str, str]]) -> DomainError:
    return rejection(violations, "predicate")


def _threshold(tree: exp.Expression, ds: Dataset, params: Mapping[str, str]) -> Threshold | None:
    node = tree
    while isinstance(node, exp.Paren):
        node = node.this
    if not isinstance(node, exp.GTE | exp.LTE):
        return None
    left, right = node.this, node.expression
    op: Literal[">=", "<="] = ">=" if isinstance(node, exp.GTE) else "<="
    if isinstance(left, exp.Placeholder) and isinstance(right, exp.Column):
        left, right = right, left
        op = "<=" if op == ">=" else ">="
    if not (isinstance(left, exp.Column) and isinstance(right, exp.Placeholder)):
        return None
    info = ds.columns.get(left.name)
    param = str(right.this or "")
    if info is None or not info.kind.numeric or info.bounds is None or params.get(param) not in ("number",
                                                                                                  "integer"):
        return None
    return Threshold(column=left.name, op=op, param=param, lower=math.floor(info.bounds[0]),
                     upper=math.ceil(info.bounds[1]))


def vet_predicate(predicate: str, params: Mapping[str, str], dataset: Dataset, subject_column: str
                  ) -> VettedPredicate:
    """Vet ``predicate`` against ``dataset``'s declaration; ``QUERY_REJECTED`` with every violation."""
    subject = dataset.columns.get(subject_column)
    if subject is None:
        raise invalid("the subject column is not a column of the dataset")
    text = predicate.strip()
    if text.lower() == EXISTS:
        unused = sorted(params)
        if unused:
            raise _reject([{"rule": "param.unused", "at": p, "hint": "`exists` takes no parameters"}
                           for p in unused])
        return VettedPredicate(dataset.name, subject_column, subject.kind, frozenset(), dict(params), "TRUE",
                               EXISTS, None)
    bad_types = sorted(k for k, v in params.items() if v not in _PARAM_SQL_TYPE)
    if bad_types:
        raise _reject([{"rule": "param.type", "at": k, "hint": "types are number, integer or string"}
                       for k in bad_types])
    try:
        statements = sqlglot.parse(text, read="duckdb")
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError):
        raise _reject([{"rule": "syntax", "at": "predicate",
                        "hint": "write one boolean expression, e.g. monthly_income >= :threshold"}]) from None
    tree = statements[0] if len(statements) == 1 else None
    if not isinstance(tree, exp.Expression):
        raise _reject([{"rule": "syntax", "at": "predicate", "hint": "write exactly one expression"}])
    v = _Vetter(dataset, subject_column, params)
    if isinstance(tree, exp.Query | exp.Command | exp.DDL | exp.DML):
        raise _reject([{"rule": "statement", "at": "predicate",
                        "hint": "a predicate is an expression, not a statement"}])
    nodes = sum(1 for _ in tree.walk())
    if nodes > MAX_NODES:
        v.fail("predicate.too_complex", "predicate", f"at most {MAX_NODES} syntax nodes")
    sql, t = v.emit(tree)
    if t is not None and t != "bool":
        v.fail("predicate.not_boolean", tree, "the predicate must be a condition (a comparison, AND/OR/NOT)")
    for name in sorted(set(params) - v.used):
        v.fail("param.unused", name, "every declared parameter must appear in the predicate")
    if v.violations:
        raise _reject(v.violations)
    canonical = tree.sql(dialect="duckdb")
    return VettedPredicate(dataset.name, subject_column, subject.kind, frozenset(v.columns), dict(params), sql,
                           canonical, _threshold(tree, dataset, params))


def canonical_subject(kind: Kind, value: object, field: str = "subject") -> str:
    """The one spelling of a subject: what the check matches, meters, hashes, audits and signs.

    Integer subject columns take a JSON integer (not a bool) or its canonical decimal text within 64-bit range
    (``7`` or ``"7"``; never ``"007"``, ``"+7"``, ``"7.0"``, ``"7e0"``, ``" 7"``, ``"-0"``, ``"0x7"``, ``"７"``,
    ``7.0`` or ``true``): it is returned as that decimal text. String subject columns take a string matching
    `SUBJECT_RE` exactly — bytes as sent, no trimming, no case folding, ASCII (so no Unicode normalisation
    question arises) — matched by ``=`` in DuckDB, which compares the same bytes. Anything else is
    ``INVALID_REQUEST`` (the value is never echoed)."""
    if kind is Kind.INTEGER:
        if isinstance(value, int) and not isinstance(value, bool):
            if INT64[0] <= value <= INT64[1]:
                return str(value)
        elif isinstance(value, str) and INT_SUBJECT_RE.fullmatch(value) and INT64[0] <= int(value) <= INT64[1]:
            return value
        raise invalid("the subject is not an integer in canonical decimal form", [
            {"field": field, "problem": "an integer subject is a JSON integer or its decimal text without sign "
                                        "(except -), leading zeros, spaces, fraction or exponent, within 64 bits"}])
    if isinstance(value, str) and SUBJECT_RE.fullmatch(value):
        return value
    raise invalid("the subject identifier is malformed", [
        {"field": field, "problem": "a string subject matches " + SUBJECT_RE.pattern + " exactly (no spaces, "
                                    "ASCII only)"}])


def canonical_subjects(kind: Kind, values: Sequence[object]) -> list[str]:
    """`canonical_subject` of each of a batch's subjects; ``INVALID_REQUEST`` listing every malformed one (by
    index) and, since a batch may name a subject once, every repeat of an earlier subject."""
    if not values:
        raise invalid("no subjects")
    out: list[str] = []
    problems: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, v in enumerate(values):
        try:
            c = canonical_subject(kind, v, f"subjects[{i}]")
        except DomainError as e:
            problems.extend(e.details)
            continue
        if c in seen:
            problems.append({"field": f"subjects[{i}]", "problem": f"repeats subjects[{seen[c]}]: a batch names "
                                                                   "each subject once"})
        else:
            seen[c] = i
        out.append(c)
    if problems:
        raise invalid("the subjects are malformed or repeated", problems[:20])
    return out


def _canonical_number(kind: str, value: object) -> float | int | None:
    """The number a parameter denotes (``None`` if it is not an admissible ``kind``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if len(value) > MAX_NUMBER_TEXT or not NUMBER_TEXT_RE.fullmatch(value):
            return None
        number: float | int = float(value)
    elif isinstance(value, int):
        if abs(value) > MAX_NUMBER:
            return None
        number = value
    elif isinstance(value, float):
        number = value
    else:
        return None
    if not math.isfinite(number) or abs(number) > MAX_NUMBER:
        return None
    if kind == "integer":
        return int(number) if float(number).is_integer() else None
    return float(number) + 0.0  # -0.0 + 0.0 == 0.0: one zero


def canonical_params(vetted: VettedPredicate, values: Mapping[str, Any]) -> dict[str, float | int | str]:
    """A check's parameters as the values the statement compares: ``number`` → float, ``integer`` → int,
    ``string`` → the exact string. ``8000``, ``8000.0``, ``"8000"`` and ``"8e3"`` are one value and ``-0.0``
    is ``0``; bools, NaN, infinities, magnitudes above 2^53 and non-JSON-number text are refused. What is
    metered (the distinct-value cap), audited and signed is the digest of these values, so re-spelling a value
    never makes it new. ``INVALID_REQUEST`` listing every missing, unknown or ill-typed value (never echoed)."""
    if not isinstance(values, Mapping):
        raise invalid("params must be an object")
    problems: list[dict[str, str]] = []
    out: dict[str, float | int | str] = {}
    for name in sorted(set(values) - set(vetted.params), key=str):
        problems.append({"field": f"params.{name}"[:80], "problem": "not a parameter of this product"})
    for name, kind in sorted(vetted.params.items()):
        if name not in values:
            problems.append({"field": f"params.{name}", "problem": "missing"})
            continue
        value = values[name]
        if kind in ("number", "integer"):
            number = _canonical_number(kind, value)
            if number is None:
                problems.append({"field": f"params.{name}", "problem": f"must be a finite {kind} of magnitude at "
                                                                       "most 2^53 (a JSON number or its text)"})
                continue
            out[name] = number
        else:
            if not isinstance(value, str) or len(value) > MAX_STRING:
                problems.append({"field": f"params.{name}", "problem": f"must be a string of at most {MAX_STRING} "
                                                                       "characters"})
                continue
            out[name] = value
    if problems:
        raise invalid("the parameters do not match the product", problems)
    return out


def bind_params(vetted: VettedPredicate, values: Mapping[str, Any]) -> dict[str, str]:
    """The statement's named parameters (``p_<name>``) from a check's ``params`` (via `canonical_params`, so
    the statement compares exactly the values that are metered and signed)."""
    return bind_canonical(vetted, canonical_params(vetted, values))


def bind_canonical(vetted: VettedPredicate, canonical: Mapping[str, float | int | str]) -> dict[str, str]:
    """``p_<name>`` → the text DuckDB casts (numbers as the shortest ``repr`` of their double)."""
    return {f"p_{name}": (repr(float(canonical[name])) if kind in ("number", "integer") else str(canonical[name]))
            for name, kind in vetted.params.items()}


def _subject_match(vetted: VettedPredicate) -> str:
    col = quote_ident(vetted.subject_column)
    if vetted.subject_kind is Kind.INTEGER:
        return f"{col} = TRY_CAST($subject AS BIGINT)"
    return f"{col} = $subject"


def check_sql(vetted: VettedPredicate) -> str:
    """The one canonical statement a check runs (1 row, 1 column)."""
    return (f"SELECT COUNT(*) FILTER (WHERE {vetted.condition_sql}) FROM {quote_ident(vetted.dataset)} "
            f"WHERE {_subject_match(vetted)}")


class Executor(Protocol):
    """What evaluation needs of `sandbox.engine.QueryWorker` (the dataset's locked worker process)."""

    def execute(self, request: ExecRequest) -> list[list[Any]]:
        """The rows of one canonical statement; `EngineFailure` with a generic reason."""


def check_subject(worker: Executor, vetted: VettedPredicate, subject: str, bound: Mapping[str, str]) -> bool:
    """Evaluate the predicate for ``subject`` (its `canonical_subject` spelling) on the dataset's locked
    worker: ``True`` iff a row of the subject satisfies it (unknown subjects: ``False``, by the same
    statement)."""
    if canonical_subject(vetted.subject_kind, subject) != subject:
        raise invalid("the subject is not in canonical form")
    rows = worker.execute(ExecRequest(sql=check_sql(vetted), params={**bound, "subject": subject}, max_rows=1,
                                      ncols=1))
    return bool(rows) and int(rows[0][0] or 0) > 0


def lookup_sql(vetted: VettedPredicate, threshold: Threshold) -> str:
    """Per known subject, the value the threshold compares (the max for ``>=``, the min for ``<=``)."""
    col = quote_ident(vetted.subject_column)
    agg = "MAX" if threshold.op == ">=" else "MIN"
    return (f"SELECT CAST({col} AS VARCHAR), {agg}(CAST({quote_ident(threshold.column)} AS DOUBLE)) "
            f"FROM {quote_ident(vetted.dataset)} "
            f"WHERE CAST({col} AS VARCHAR) IN (SELECT UNNEST(string_split($subjects, ','))) GROUP BY 1")


def threshold_values(worker: Executor, vetted: VettedPredicate, subjects: Sequence[str]) -> tuple[list[int],
                                                                                             tuple[int, int, int,
                                                                                                   int]]:
    """The masked sign's inputs for ``subjects`` (canonical, each named once: `canonical_subjects`): one
    integer per subject and ``(value_min, value_max, threshold_min, threshold_max)``.

    For ``column >= t`` with integer t in ``[lo, hi]``: ``x ≥ t ⇔ floor(x) ≥ t``; values are clamped to
    ``[lo − 1, hi]`` (which keeps every answer) and unknown subjects or NULLs get ``lo − 1``, which is below
    every admissible t: "false". For ``column <= t`` the bank encrypts ``−t``: ``x ≤ t ⇔ −ceil(x) ≥ −t``,
    values ``−clamp(ceil(x), lo, hi + 1)`` and unknown subjects ``−(hi + 1)``.
    """
    th = vetted.threshold
    if th is None:
        raise invalid("this product has no encrypted form")
    if canonical_subjects(vetted.subject_kind, subjects) != list(subjects):
        raise invalid("the subjects are not in canonical form")
    distinct = sorted(subjects)
    rows = worker.execute(ExecRequest(sql=lookup_sql(vetted, th), params={"subjects": ",".join(distinct)},
                                      max_rows=len(distinct), ncols=2))
    found: dict[str, float] = {}
    for key, value in rows:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            found[str(key)] = float(value)
    return [masked_input(th, found.get(s)) for s in subjects], sign_box(th)


def sign_box(threshold: Threshold) -> tuple[int, int, int, int]:
    """``(value_min, value_max, threshold_min, threshold_max)`` of the masked sign for ``threshold``."""
    lo, hi = threshold.lower, threshold.upper
    return (lo - 1, hi, lo, hi) if threshold.op == ">=" else (-(hi + 1), -lo, -hi, -lo)


def masked_input(threshold: Threshold, value: float | None) -> int:
    """The integer the masked sign compares with the bank's (possibly negated) threshold; ``None``: unknown."""
    lo, hi = threshold.lower, threshold.upper
    if threshold.op == ">=":
        return lo - 1 if value is None else min(max(math.floor(value), lo - 1), hi)
    return -(hi + 1) if value is None else -min(max(math.ceil(value), lo), hi + 1)
