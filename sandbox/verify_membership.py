"""``hide_membership``: refuse verification predicates whose verdict would be the membership bit.

An unknown subject answers "no" (`sandbox.verify`), so a predicate that is true for *every* row a dataset could
hold answers "yes" exactly for the subjects that are present: the product would be a membership oracle. A
product declared with ``hide_membership: true`` is refused (``QUERY_REJECTED``, rule ``membership.*``) unless
this module **proves**, from the dataset's declaration alone (never its data), that

    for every admissible parameter value p there is a declared row x on which the predicate is not true,

i.e. no parameter the bank may send turns the question into "is this subject present?". Admissible parameters
are every value a check accepts (`sandbox.verify.canonical_params`: numbers and integers in [−2^53, 2^53], any
string); declared rows are the product of the columns' declared values (a dimension's ``domain``, a bounded
column's ``[lower, upper]`` — integers only for integer columns). A predicate that cannot be proved is refused:

- ``membership.exists``: the predicate ``exists`` is presence itself;
- ``membership.always_true``: a parameter value was found (named in the hint) for which the predicate holds for
  every declared row — e.g. ``monthly_income >= :t`` at ``t = -2^53`` (or any t ≤ the lower bound): a one-sided
  threshold always admits such a value, so threshold products cannot hide membership;
- ``membership.unproven``: neither a proof nor such a value was found within the search budget.

Method (interval reasoning, chosen over evaluating corners in DuckDB as `sandbox.sql.keys` does): corner
evaluation shows what happens at finitely many points but proves nothing about the points between them or
about all parameters — ``abs(income - :d) <= 100000`` with income in [0, 200000] is false at every corner of
both ranges yet true for every row at d = 100000. Here the vetted expression is evaluated over *intervals* with
outward rounding (every operation's result is widened by one ulp each way, so the interval contains both the
real result and DuckDB's double result for every point in the inputs) and three-valued logic (true / false /
unknown). String parameters range over the finitely many strings the predicate can tell apart (the declared
domains, the string literals, and one fresh string per parameter); numeric parameters are split by bisection
(branch and bound). A box of parameter values is proved when one concrete declared row (a *witness*: bounds,
midpoints, literals and their neighbours, domain values) makes the predicate definitely not true for the whole
box; at sample points of each unproved box (its corners, the extreme values first, and its midpoint) the
predicate is evaluated over the whole declared row space, and "definitely true" is a counterexample. Both
verdicts are sound; only "unproven" is a guess, and it refuses.

Known limit (docs/mechanisms/verification.md): this is about *declared* values. A predicate true for nearly
every real row (``monthly_income >= 0.01`` when nobody earns less) passes and is still close to a membership
oracle; and whatever the predicate, a "yes" always shows the subject is present.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp

from catalog.columns import ColumnInfo, Kind
from catalog.errors import QUERY_REJECTED, DomainError
from catalog.registry import Dataset
from sandbox.verify import EXISTS, MAX_NUMBER, VettedPredicate

__all__ = ["MAX_BOXES", "MAX_WITNESSES", "prove_membership_hidden"]

#: Parameter boxes examined before giving up (and refusing) — bounds the work of one registration.
MAX_BOXES = 400
#: Witness rows tried per box, and string cases (assignments of string parameters) in all.
MAX_WITNESSES = 256
MAX_STRING_CASES = 512
MAX_ROW_CASES = 4096

Interval = tuple[float, float]
#: A three-valued truth: True, False or None (unknown).
Truth = bool | None


class _Other:
    """A string none of the predicate's strings equal (one per string parameter, so that two parameters can be
    equal or different strings)."""

    def __init__(self, i: int) -> None:
        self.i = i

    def __repr__(self) -> str:
        return f"<another string #{self.i}>"


Value = Interval | str | _Other | bool | None  # None: unknown boolean


def _down(x: float) -> float:
    return math.nextafter(x, -math.inf)


def _up(x: float) -> float:
    return math.nextafter(x, math.inf)


def _iv(lo: float, hi: float, widen: bool = True) -> Interval:
    """An interval, outward-rounded by one ulp when ``widen``; anything not finite becomes the whole line."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return (-math.inf, math.inf)
    return (_down(lo), _up(hi)) if widen else (lo, hi)


def _point(x: float) -> Interval:
    return (float(x), float(x))


def _finite(a: Interval) -> bool:
    return math.isfinite(a[0]) and math.isfinite(a[1])


def _cmp(op: type[exp.Expression], a: Interval, b: Interval) -> Truth:
    if not (_finite(a) and _finite(b)):
        return None
    (a1, a2), (b1, b2) = a, b
    if op is exp.GTE:
        return True if a1 >= b2 else False if a2 < b1 else None
    if op is exp.GT:
        return True if a1 > b2 else False if a2 <= b1 else None
    if op is exp.LTE:
        return True if a2 <= b1 else False if a1 > b2 else None
    if op is exp.LT:
        return True if a2 < b1 else False if a1 >= b2 else None
    eq: Truth = True if a1 == a2 == b1 == b2 else False if (a2 < b1 or b2 < a1) else None
    if op is exp.EQ:
        return eq
    return None if eq is None else not eq  # NEQ


def _str_eq(a: Value, b: Value) -> Truth:
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, _Other) and isinstance(b, _Other):
        return a.i == b.i
    return False  # a fresh string equals none of the predicate's strings


def _and(a: Truth, b: Truth) -> Truth:
    if a is False or b is False:
        return False
    return True if a is True and b is True else None


def _or(a: Truth, b: Truth) -> Truth:
    if a is True or b is True:
        return True
    return False if a is False and b is False else None


def _mul(a: Interval, b: Interval, widen: bool) -> Interval:
    products = [x * y for x in a for y in b]
    if any(math.isnan(p) for p in products):
        return (-math.inf, math.inf)
    return _iv(min(products), max(products), widen)


class _Eval:
    """Interval evaluation of a vetted predicate tree (the node types `sandbox.verify` admits)."""

    def __init__(self, env: Mapping[str, Value], widen: bool = True) -> None:
        self.env, self.widen = env, widen

    def value(self, node: exp.Expression) -> Value:
        if isinstance(node, exp.Paren):
            return self.value(node.this)
        if isinstance(node, exp.Column):
            return self.env[node.name]
        if isinstance(node, exp.Placeholder):
            return self.env[":" + str(node.this)]
        if isinstance(node, exp.Literal):
            return str(node.this) if node.is_string else _point(float(str(node.this)))
        if isinstance(node, exp.Boolean):
            return bool(node.this)
        if isinstance(node, exp.Neg):
            a = self.num(node.this)
            return (-a[1], -a[0])
        if isinstance(node, exp.Abs):
            lo, hi = self.num(node.this)
            if lo >= 0:
                return (lo, hi)
            if hi <= 0:
                return (-hi, -lo)
            return (0.0, max(-lo, hi))
        if isinstance(node, exp.Add | exp.Sub | exp.Mul | exp.Div):
            a, b = self.num(node.this), self.num(node.expression)
            if isinstance(node, exp.Add):
                return _iv(a[0] + b[0], a[1] + b[1], self.widen)
            if isinstance(node, exp.Sub):
                return _iv(a[0] - b[1], a[1] - b[0], self.widen)
            if isinstance(node, exp.Mul):
                return _mul(a, b, self.widen)
            return _div(a, b, self.widen)
        return self.truth(node)

    def num(self, node: exp.Expression) -> Interval:
        v = self.value(node)
        assert isinstance(v, tuple), "vetted predicates apply arithmetic to numbers only"
        return v

    def truth(self, node: exp.Expression) -> Truth:
        if isinstance(node, exp.Paren):
            return self.truth(node.this)
        if isinstance(node, exp.Boolean):
            return bool(node.this)
        if isinstance(node, exp.Column):
            v = self.env[node.name]
            return v if isinstance(v, bool) or v is None else None
        if isinstance(node, exp.And):
            return _and(self.truth(node.this), self.truth(node.expression))
        if isinstance(node, exp.Or):
            return _or(self.truth(node.this), self.truth(node.expression))
        if isinstance(node, exp.Not):
            t = self.truth(node.this)
            return None if t is None else not t
        if isinstance(node, exp.Between):
            v = self.num(node.this)
            return _and(_cmp(exp.GTE, v, self.num(node.args["low"])), _cmp(exp.LTE, v, self.num(node.args["high"])))
        if isinstance(node, exp.EQ | exp.NEQ | exp.GT | exp.GTE | exp.LT | exp.LTE):
            a, b = self.value(node.this), self.value(node.expression)
            if isinstance(a, tuple) and isinstance(b, tuple):
                return _cmp(type(node), a, b)
            if isinstance(a, bool | None) or isinstance(b, bool | None):
                return None  # vetting refuses comparisons of conditions; stay unknown if one slips through
            eq = _str_eq(a, b)
            return eq if isinstance(node, exp.EQ) else (None if eq is None else not eq)
        return None  # not a node vetting admits: unknown (never proves anything)


def _div(a: Interval, b: Interval, widen: bool) -> Interval:
    if b[0] <= 0 <= b[1]:
        return (-math.inf, math.inf)
    quotients = [x / y for x in a for y in b]
    return _iv(min(quotients), max(quotients), widen)


# --- the declared row space and the parameter space ------------------------------------------------------------


@dataclass(frozen=True)
class _Space:
    """Per column: its declared values as a finite list (domains) or an interval (bounds)."""

    finite: dict[str, list[Any]]
    ranges: dict[str, tuple[float, float, bool]]  # lo, hi, integer-valued


def _reject(rule: str, at: str, hint: str) -> DomainError:
    return DomainError(QUERY_REJECTED, "the predicate would reveal whether a subject is present "
                                       "(hide_membership)", [{"rule": rule, "at": at, "hint": hint}])


def _space(columns: Mapping[str, ColumnInfo]) -> _Space:
    finite: dict[str, list[Any]] = {}
    ranges: dict[str, tuple[float, float, bool]] = {}
    for name, info in sorted(columns.items()):
        if info.domain is not None:
            finite[name] = [_point(float(v)) if info.kind.numeric and not isinstance(v, bool) else v
                            for v in info.domain]
        elif info.bounds is not None and info.kind.numeric:
            lo, hi = float(info.bounds[0]), float(info.bounds[1])
            integer = info.kind is Kind.INTEGER
            if integer:
                lo, hi = float(math.ceil(lo)), float(math.floor(hi))
            ranges[name] = (lo, hi, integer)
        elif info.kind is Kind.BOOLEAN:
            finite[name] = [True, False]
        else:
            raise _reject("membership.undeclared", name, f"{name} has no declared domain or bounds, so no declared "
                                                         "row can be shown to answer no")
    return _Space(finite, ranges)


def _numeric_literals(tree: exp.Expression) -> list[float]:
    return sorted({float(str(n.this)) for n in tree.find_all(exp.Literal) if not n.is_string})


def _string_literals(tree: exp.Expression) -> list[str]:
    return sorted({str(n.this) for n in tree.find_all(exp.Literal) if n.is_string})


def _candidates(lo: float, hi: float, integer: bool, literals: Sequence[float]) -> list[float]:
    """Points of [lo, hi] worth trying as witnesses: the ends, the middle and quarters, each literal (and its
    neighbours) that falls inside."""
    pts = [lo, hi, (lo + hi) / 2, lo + (hi - lo) / 4, hi - (hi - lo) / 4]
    for c in literals:
        pts += [c, _down(c), _up(c), c - 1, c + 1, -c]
    out: list[float] = []
    for p in pts:
        q = [float(math.floor(p)), float(math.ceil(p))] if integer else [p]
        for v in q:
            if lo <= v <= hi and v not in out:
                out.append(v)
    return out


def _witnesses(space: _Space, literals: Sequence[float]) -> list[dict[str, Value]]:
    names = list(space.finite) + list(space.ranges)
    options: list[list[Value]] = [space.finite[n] for n in space.finite]
    options += [[_point(v) for v in _candidates(lo, hi, integer, literals)]
                for lo, hi, integer in space.ranges.values()]
    return [dict(zip(names, combo, strict=True))
            for combo in itertools.islice(itertools.product(*options), MAX_WITNESSES)]


def _row_cases(space: _Space) -> Iterator[dict[str, Value]]:
    """The whole declared row space: finite columns enumerated, bounded columns as their interval."""
    ranges: dict[str, Value] = {n: (lo, hi) for n, (lo, hi, _) in space.ranges.items()}
    for combo in itertools.product(*space.finite.values()):
        yield {**dict(zip(space.finite, combo, strict=True)), **ranges}


Box = tuple[tuple[float, float], ...]


def _split(box: Box, integer: Sequence[bool]) -> list[Box]:
    widths = [hi - lo for lo, hi in box]
    i = max(range(len(box)), key=lambda k: widths[k])
    lo, hi = box[i]
    if integer[i]:
        cut = math.floor((lo + hi) / 2)
        halves = [(lo, float(cut)), (float(cut + 1), hi)]
    else:
        mid = (lo + hi) / 2
        halves = [(lo, mid), (mid, hi)]
    return [(*box[:i], h, *box[i + 1:]) for h in halves if h[0] <= h[1]]


def _samples(box: Box, integer: Sequence[bool]) -> list[tuple[float, ...]]:
    """Points of a box to test for a counterexample: all-lower, all-upper, the middle, then each parameter at
    its ends with the others in the middle (extreme values first)."""
    def snap(v: float, k: int) -> float:
        return float(min(max(round(v), box[k][0]), box[k][1])) if integer[k] else v

    mid = tuple(snap((lo + hi) / 2, k) for k, (lo, hi) in enumerate(box))
    pts = [tuple(lo for lo, _ in box), tuple(hi for _, hi in box), mid]
    for k, (lo, hi) in enumerate(box):
        pts += [(*mid[:k], lo, *mid[k + 1:]), (*mid[:k], hi, *mid[k + 1:])]
    seen: list[tuple[float, ...]] = []
    for p in pts:
        if p not in seen:
            seen.append(p)
    return seen


def _show(value: float, integer: bool) -> str:
    return str(int(value)) if integer or value.is_integer() else repr(value)


def _prove(tree: exp.Expression, space: _Space, params: Mapping[str, str]) -> None:
    numeric = sorted(p for p, k in params.items() if k in ("number", "integer"))
    strings = sorted(p for p, k in params.items() if k == "string")
    integer = [params[p] == "integer" for p in numeric]
    known_strings = sorted({str(v) for vals in space.finite.values() for v in vals if isinstance(v, str)}
                           | set(_string_literals(tree)))
    string_values: list[Value] = [*known_strings, *[_Other(i) for i in range(len(strings))]]
    string_cases = list(itertools.product(string_values, repeat=len(strings)))
    if len(string_cases) > MAX_STRING_CASES:
        raise _reject("membership.unproven", "params", "too many string cases to examine: use fewer string "
                                                       "parameters")
    row_cases = list(itertools.islice(_row_cases(space), MAX_ROW_CASES + 1))
    if len(row_cases) > MAX_ROW_CASES:
        raise _reject("membership.unproven", "columns", "the predicate's columns have too many declared value "
                                                        "combinations to examine")
    witnesses = _witnesses(space, _numeric_literals(tree))
    budget = MAX_BOXES
    for case in string_cases:
        fixed: dict[str, Value] = {":" + p: v for p, v in zip(strings, case, strict=True)}
        stack: list[Box] = [tuple((-MAX_NUMBER, MAX_NUMBER) for _ in numeric)]
        hint_case = ", ".join(f":{p} = {v!r}" for p, v in zip(strings, case, strict=True))
        last_witness = 0
        while stack:
            box = stack.pop()
            env_box = {**fixed, **{":" + p: iv for p, iv in zip(numeric, box, strict=True)}}
            order = [last_witness, *range(len(witnesses))]
            proved = False
            for w in order:
                if _Eval({**witnesses[w], **env_box}).truth(tree) is False:
                    proved, last_witness = True, w
                    break
            if proved:
                continue
            for point in _samples(box, integer):
                env = {**fixed, **{":" + p: _point(v) for p, v in zip(numeric, point, strict=True)}}
                if all(_Eval({**row, **env}, widen=False).truth(tree) is True for row in row_cases):
                    named = ", ".join(filter(None, [hint_case] + [f":{p} = {_show(v, i)}" for p, v, i in
                                                                  zip(numeric, point, integer, strict=True)]))
                    raise _reject("membership.always_true", "predicate",
                                  "true for every declared value of its columns"
                                  + (f" when {named}" if named else "")
                                  + ", so the answer would say whether the subject is present")
            budget -= 1
            if not numeric or budget <= 0:
                raise _reject("membership.unproven", "predicate",
                              "could not show a declared row that answers no for every admissible parameter value"
                              + (f" (at {hint_case})" if hint_case else "")
                              + "; add a condition some declared value fails")
            stack.extend(_split(box, integer))


@functools.lru_cache(maxsize=256)
def _proved(predicate: str, params_json: str, columns_json: str) -> DomainError | None:
    """Cached proof (the key is everything it reads: predicate, parameter types, the columns' declarations)."""
    params: dict[str, str] = json.loads(params_json)
    columns = {k: ColumnInfo.model_validate(v) for k, v in json.loads(columns_json).items()}
    tree = sqlglot.parse_one(predicate, read="duckdb")
    assert isinstance(tree, exp.Expression), "the predicate was vetted"
    try:
        _prove(tree, _space(columns), params)
    except DomainError as e:
        return e
    return None


def prove_membership_hidden(vetted: VettedPredicate, predicate: str, dataset: Dataset) -> None:
    """Raise ``QUERY_REJECTED`` (rule ``membership.exists``/``.undeclared``/``.always_true``/``.unproven``)
    unless every admissible parameter value leaves a declared row of ``dataset`` on which ``predicate`` (already
    vetted as ``vetted``) is not true. Reads declarations only; cached."""
    if vetted.canonical == EXISTS:
        raise _reject("membership.exists", "predicate", "`exists` answers exactly whether the subject is present")
    cols = {c: dataset.columns[c].model_dump(mode="json") for c in sorted(vetted.columns)}
    err = _proved(predicate.strip(), json.dumps(dict(vetted.params), sort_keys=True),
                  json.dumps(cols, sort_keys=True))
    if err is not None:
        raise DomainError(err.code, err.message, [dict(d) for d in err.details])
