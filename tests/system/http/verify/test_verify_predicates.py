"""`sandbox.verify`: predicate vetting (allow-list, types, every violation), parameter binding, evaluation on
the locked worker, and the masked-sign inputs (unknown subjects read "false" for every admissible threshold)."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalog import _tables as catalog_tables
from catalog import registry
from catalog.columns import DatasetSpec
from catalog.errors import DomainError
from catalog.store import make_engine
from sandbox.engine import QueryWorker
from sandbox.verify import (
    Threshold,
    VettedPredicate,
    bind_params,
    check_sql,
    check_subject,
    masked_input,
    sign_box,
    threshold_values,
    vet_predicate,
)

ROWS = [  # pid (int id), income (nullable), months, city, employer (join key: several rows)
    (1, 8000.0, 12, "A", "E1"),
    (2, 7999.99, 0, "B", "E1"),
    (3, None, 480, "A", "E2"),
    (4, 200000.0, 240, "B", "E2"),
    (5, 0.0, 36, "A", "E2"),
]
SPEC = {
    "name": "people", "source": "", "grade": "general", "personal": True,
    "columns": {"pid": {"role": "id"}, "income": {"role": "measure", "bounds": [0, 200000]},
                "months": {"role": "measure", "bounds": [0, 480]},
                "city": {"role": "dimension", "domain": ["A", "B"]}, "employer": {"role": "join_key"},
                "secret": {"role": "never_output"}},
}


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    root = tmp_path_factory.mktemp("verify")
    src = root / "in" / "people.parquet"
    src.parent.mkdir()
    pq.write_table(pa.table({"pid": [r[0] for r in ROWS], "income": [r[1] for r in ROWS],
                             "months": [r[2] for r in ROWS], "city": [r[3] for r in ROWS],
                             "employer": [r[4] for r in ROWS], "secret": ["s"] * len(ROWS)}), src)
    engine = make_engine(f"sqlite:///{root / 'm.db'}")
    catalog_tables.metadata.create_all(engine)
    spec = DatasetSpec.model_validate({**SPEC, "source": str(src)})
    ds = registry.register(engine, spec, "owner", root / "data", [src.parent], 1 << 30).dataset
    worker = QueryWorker({ds.name: ds.path}, threads=1, memory_limit="256MB", timeout_s=60)
    worker.start()
    yield ds, worker
    worker.stop()
    engine.dispose()


def rejected(predicate: str, params: dict, ds, subject: str = "pid") -> list[dict]:
    with pytest.raises(DomainError) as e:
        vet_predicate(predicate, params, ds, subject)
    assert e.value.code == "QUERY_REJECTED"
    assert all(set(d) == {"rule", "at", "hint"} for d in e.value.details)
    return e.value.details


def test_allowed_predicates_and_their_canonical_sql(people):
    ds, _ = people
    v = vet_predicate("income >= :t", {"t": "number"}, ds, "pid")
    assert v.condition_sql == '(CAST("income" AS DOUBLE) >= CAST($p_t AS DOUBLE))'
    assert v.threshold == Threshold("income", ">=", "t", 0, 200000) and v.columns == {"income"}
    v = vet_predicate(":t >= months", {"t": "integer"}, ds, "pid")
    assert v.threshold == Threshold("months", "<=", "t", 0, 480)
    v = vet_predicate("(abs(income - :d) <= :tol * income) AND NOT city <> :c OR months BETWEEN 1 AND 2.5",
                      {"d": "number", "tol": "number", "c": "string"}, ds, "pid")
    assert v.threshold is None and v.columns == {"income", "city", "months"}
    assert "$p_c" in v.condition_sql and "abs(" in v.condition_sql
    assert vet_predicate("EXISTS", {}, ds, "employer").condition_sql == "TRUE"
    assert vet_predicate("income / 12 > 100 -- monthly", {}, ds, "pid").threshold is None


@pytest.mark.parametrize("predicate,params,rules", [
    ("secret = 's'", {}, {"column.role"}),
    ("employer = 'E1'", {}, {"column.role"}),
    ("pid = 1", {}, {"column.subject"}),
    ("nope > 1", {}, {"column.unknown"}),
    ("people.income > 1", {}, {"column.qualified"}),
    ("upper(city) = 'A'", {}, {"function.not_allowed"}),
    ("CAST(income AS INT) > 1", {}, {"function.not_allowed"}),
    ("income IN (SELECT 1)", {}, {"node.not_allowed"}),
    ("income > (SELECT MAX(income) FROM people)", {}, {"subquery"}),
    ("city LIKE 'A%'", {}, {"node.not_allowed"}),
    ("income IS NULL", {}, {"node.not_allowed"}),
    ("income > :x", {}, {"param.undeclared"}),
    ("income > 1", {"x": "number"}, {"param.unused"}),
    ("city > 'A'", {}, {"type.mismatch"}),
    ("city + 1 > 2", {}, {"type.mismatch"}),
    ("income = :c", {"c": "string"}, {"type.mismatch"}),
    ("income / months > 1", {}, {"division.divisor"}),
    ("income / 0 > 1", {}, {"division.divisor"}),
    ("income + 1", {}, {"predicate.not_boolean"}),
    ("income > 1e400", {}, {"literal.range"}),
    ("income > 1; DROP TABLE people", {}, {"syntax"}),
    ("SELECT 1", {}, {"statement"}),
    ("exists", {"t": "number"}, {"param.unused"}),
    ("income > :t", {"t": "date"}, {"param.type"}),
])
def test_refused_predicates_name_their_rule(people, predicate, params, rules):
    ds, _ = people
    assert {d["rule"] for d in rejected(predicate, params, ds)} >= rules


def test_every_violation_is_reported_at_once(people):
    ds, _ = people
    details = rejected("secret = 's' OR upper(city) = 'A' OR :x > 1 OR city > 'B'", {"y": "number"}, ds)
    assert {d["rule"] for d in details} == {"column.role", "function.not_allowed", "param.undeclared",
                                            "type.mismatch", "param.unused"}


def test_deep_or_huge_predicates_are_refused(people):
    ds, _ = people
    deep = "(" * 30 + "income > 1" + ")" * 30
    assert {d["rule"] for d in rejected(deep, {}, ds)} == {"predicate.too_complex"}
    wide = " OR ".join(f"income > {i}" for i in range(40))
    assert "predicate.too_complex" in {d["rule"] for d in rejected(wide, {}, ds)}


def test_parameters_are_typed_and_never_echoed(people):
    ds, _ = people
    v = vet_predicate("income >= :t AND city = :c", {"t": "integer", "c": "string"}, ds, "pid")
    assert bind_params(v, {"t": 5, "c": "A"}) == {"p_t": "5.0", "p_c": "A"}
    assert bind_params(v, {"t": "5", "c": "A"}) == bind_params(v, {"t": 5.0, "c": "A"})
    for bad in ({"t": 5}, {"t": 5.5, "c": "A"}, {"t": "5.5", "c": "A"}, {"t": True, "c": "A"},
                {"t": 5, "c": 1}, {"t": 5, "c": "A", "z": 1}, {"t": math.inf, "c": "A"}, {"t": 2**60, "c": "A"}):
        with pytest.raises(DomainError) as e:
            bind_params(v, bad)
        assert e.value.code == "INVALID_REQUEST"
        assert "A" not in str(e.value.details) or "c" in str(e.value.details)


def test_checks_on_the_locked_worker(people):
    ds, worker = people
    at_least = vet_predicate("income >= :t", {"t": "number"}, ds, "pid")
    assert check_sql(at_least).endswith('WHERE "pid" = TRY_CAST($subject AS BIGINT)')

    def ask(v: VettedPredicate, subject: str, **params: object) -> bool:
        return check_subject(worker, v, subject, bind_params(v, params))

    assert ask(at_least, "1", t=8000) is True
    assert ask(at_least, "2", t=8000) is False
    assert ask(at_least, "3", t=0) is False  # NULL income: no
    assert ask(at_least, "99", t=0) is False  # unknown subject: no
    for spelling in ("not-a-number", "01", " 1", "+1", "1.0"):  # not an integer id's one spelling: refused
        with pytest.raises(DomainError):
            ask(at_least, spelling, t=0)
    by_employer = vet_predicate("income >= :t", {"t": "number"}, ds, "employer")
    assert ask(by_employer, "E2", t=150_000) is True  # some row of the subject passes
    assert ask(by_employer, "E1", t=9000) is False
    exists = vet_predicate("exists", {}, ds, "pid")
    assert ask(exists, "5") is True and ask(exists, "6") is False
    with pytest.raises(DomainError):
        ask(at_least, "1' OR '1'='1", t=0)


def test_threshold_values_for_the_masked_sign(people):
    ds, worker = people
    ge = vet_predicate("income >= :t", {"t": "number"}, ds, "pid")
    values, box = threshold_values(worker, ge, ["1", "2", "3", "99", "4"])
    assert box == (-1, 200000, 0, 200000)
    assert values == [8000, 7999, -1, -1, 200000]
    with pytest.raises(DomainError):  # a subject once per batch
        threshold_values(worker, ge, ["1", "2", "1"])
    le = vet_predicate("months <= :n", {"n": "integer"}, ds, "pid")
    values, box = threshold_values(worker, le, ["1", "99"])
    assert box == (-481, 0, -480, 0) and values == [-12, -481]
    with pytest.raises(DomainError):
        threshold_values(worker, vet_predicate("income > :t", {"t": "number"}, ds, "pid"), ["1"])
    with pytest.raises(DomainError):
        threshold_values(worker, ge, ["1,2"])


@settings(max_examples=400, deadline=None)
@given(x=st.one_of(st.none(), st.floats(-10, 210, allow_nan=False)), t=st.integers(0, 200),
       op=st.sampled_from([">=", "<="]))
def test_masked_sign_inputs_preserve_every_answer(x, t, op):
    """For every stored value (or an unknown subject) and every admissible threshold, the integer comparison the
    masked sign makes (``value ≥ t``, or ``value ≥ −t`` for ``<=``) is the plaintext answer, and every value lies
    in the declared box; unknown subjects always read "false"."""
    th = Threshold("v", op, "t", 0, 200)
    vmin, vmax, tmin, tmax = sign_box(th)
    value = masked_input(th, x)
    bank_t = t if op == ">=" else -t
    assert vmin <= value <= vmax and tmin <= bank_t <= tmax
    truth = x is not None and (x >= t if op == ">=" else x <= t)
    assert (value >= bank_t) == truth


def test_the_subject_column_must_exist(people, tmp_path: Path):
    ds, _ = people
    with pytest.raises(DomainError) as e:
        vet_predicate("income > 1", {}, ds, "nope")
    assert e.value.code == "INVALID_REQUEST"
