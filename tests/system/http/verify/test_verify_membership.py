"""``hide_membership``: a product whose predicate holds for every declared row (for some admissible parameter)
would answer "is this subject present?" — refused at definition, proved from declarations only; the interval
evaluation behind the proof agrees with DuckDB wherever it claims to know the answer."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalog.columns import ColumnInfo
from catalog.errors import DomainError
from catalog.registry import Dataset
from sandbox.engine.hardening import connect_locked
from sandbox.verify import vet_predicate
from sandbox.verify_membership import _Eval, _point, prove_membership_hidden
from veilbox.client import ApiError

COLUMNS = {
    "pid": {"role": "id", "kind": "integer"},
    "income": {"role": "measure", "kind": "float", "bounds": [0, 200000]},
    "months": {"role": "measure", "kind": "integer", "bounds": [0, 480]},
    "age": {"role": "dimension", "kind": "integer", "bounds": [16, 100]},
    "city": {"role": "dimension", "kind": "string", "domain": ["A", "B"]},
    "sole": {"role": "dimension", "kind": "string", "domain": ["A"]},
    "flag": {"role": "dimension", "kind": "integer", "domain": [0, 1]},
}


@pytest.fixture(scope="module")
def ds() -> Dataset:
    """A declaration (no data is read: the proof uses declared domains and bounds only)."""
    return Dataset(name="people", owner="o", description="", grade="general", personal=True,  # type: ignore[arg-type]
                   sensitive=False, columns={k: ColumnInfo.model_validate(v) for k, v in COLUMNS.items()},
                   max_rows_per_unit=1, fingerprint="sha256:0", rows=0, bytes=0, path=Path("/nonexistent"),
                   ingest_report={}, created_at=dt.datetime.now(dt.UTC))


def outcome(ds: Dataset, predicate: str, params: dict[str, str]) -> str | None:
    """None when the predicate may hide membership, else the refusal's rule."""
    vetted = vet_predicate(predicate, params, ds, "pid")
    try:
        prove_membership_hidden(vetted, predicate, ds)
    except DomainError as e:
        assert e.code == "QUERY_REJECTED" and all(set(d) == {"rule", "at", "hint"} for d in e.details)
        return str(e.details[0]["rule"])
    return None


ACCEPTED = [
    ("income > 0", {}),
    ("age >= 17", {}),
    ("NOT (income BETWEEN 50 AND 60)", {}),
    ("city = :c", {"c": "string"}),
    ("city = :c AND income >= :t", {"c": "string", "t": "number"}),
    ("abs(income - :d) <= 5000", {"d": "number"}),
    ("income >= :t AND income <= :t + 0.5", {"t": "number"}),
    ("income >= :t AND income > 0", {"t": "number"}),
    ("flag = 1 AND months >= :n", {"n": "integer"}),
]
REFUSED = [
    ("exists", {}, "membership.exists"),
    ("income >= 0", {}, "membership.always_true"),
    ("age >= 16", {}, "membership.always_true"),
    ("TRUE", {}, "membership.always_true"),
    ("city = 'A' OR city = 'B'", {}, "membership.always_true"),
    ("flag = 0 OR flag = 1", {}, "membership.always_true"),
    ("income * income >= 0", {}, "membership.always_true"),
    # parameterised: some admissible parameter makes it true for every declared row
    ("income >= :t", {"t": "number"}, "membership.always_true"),
    (":n >= months", {"n": "integer"}, "membership.always_true"),
    ("sole = :c", {"c": "string"}, "membership.always_true"),
    ("city = :c OR city <> :c", {"c": "string"}, "membership.always_true"),
    ("income > :t OR income < :t + 1", {"t": "number"}, "membership.always_true"),
    ("months >= :a AND months <= :b", {"a": "integer", "b": "integer"}, "membership.always_true"),
    # true for every row only at an interior parameter (d = 100000): no corner shows it
    ("abs(income - :d) <= 100000", {"d": "number"}, "membership.always_true"),
    # a tautology (declared = 0, tol = 1) the search does not name: refused as unproven
    ("abs(income - :declared) <= :tol * income", {"declared": "number", "tol": "number"}, "membership.unproven"),
]


@pytest.mark.parametrize("predicate,params", ACCEPTED)
def test_predicates_that_some_declared_row_fails_are_accepted(ds, predicate, params):
    assert outcome(ds, predicate, params) is None


@pytest.mark.parametrize("predicate,params,rule", REFUSED)
def test_membership_tests_are_refused(ds, predicate, params, rule):
    assert outcome(ds, predicate, params) == rule


def test_the_refusal_names_the_parameter_that_makes_it_always_true(ds):
    vetted = vet_predicate("abs(income - :d) <= 100000", {"d": "number"}, ds, "pid")
    with pytest.raises(DomainError) as e:
        prove_membership_hidden(vetted, "abs(income - :d) <= 100000", ds)
    assert ":d = 100000" in e.value.details[0]["hint"]


# --- soundness against DuckDB -------------------------------------------------------------------------------------

GRID = {"income": [0.0, 0.5, 1.0, 25.0, 49.5, 50.0, 55.0, 60.0, 60.5, 4999.0, 5000.0, 5000.5, 100000.0, 199999.5,
                   200000.0] + [i * 1000.0 for i in range(0, 201, 7)],
        "months": [*range(0, 481, 16), 480], "age": [16, 17, 50, 100], "city": ["A", "B"], "flag": [0, 1]}


def _duck(con, condition_sql: str, row: dict, params: dict) -> bool | None:
    cols = ", ".join(f'CAST($c_{k} AS {"VARCHAR" if isinstance(v, str) else "DOUBLE"}) AS "{k}"'
                     for k, v in row.items())
    binds = {**{f"c_{k}": (v if isinstance(v, str) else repr(float(v))) for k, v in row.items()},
             **{f"p_{k}": (v if isinstance(v, str) else repr(float(v))) for k, v in params.items()}}
    got = con.execute(f"SELECT {condition_sql} FROM (SELECT {cols or '1 AS one'})", binds).fetchone()
    return None if got is None or got[0] is None else bool(got[0])


param_value = st.one_of(st.floats(-3e5, 3e5, allow_nan=False), st.integers(-500, 500).map(float),
                        st.sampled_from([0.0, -0.0, 2.0**53, -(2.0**53), 100000.0, 5000.0, 1e-300]))


@settings(max_examples=60, deadline=None)
@given(case=st.sampled_from(ACCEPTED), data=st.data())
def test_accepted_predicates_leave_a_declared_no_for_every_parameter(ds, case, data):
    """For an accepted predicate and any admissible parameter, DuckDB finds a declared row answering "no"."""
    predicate, params = case
    values: dict[str, object] = {}
    for name, kind in params.items():
        if kind == "string":
            values[name] = data.draw(st.sampled_from(["A", "B", "C", ""]), label=name)
        else:
            v = data.draw(param_value, label=name)
            values[name] = float(round(v)) if kind == "integer" else v
    vetted = vet_predicate(predicate, params, ds, "pid")
    names = sorted(vetted.columns)
    con = connect_locked()
    try:
        import itertools

        answers = [_duck(con, vetted.condition_sql, dict(zip(names, combo, strict=True)), values)
                   for combo in itertools.product(*(GRID[n] for n in names))]
    finally:
        con.close()
    assert any(a is not True for a in answers), (predicate, values)


@settings(max_examples=300, deadline=None)
@given(case=st.sampled_from(ACCEPTED + [(p, q) for p, q, _ in REFUSED if p != "exists"]), data=st.data())
def test_interval_evaluation_agrees_with_duckdb_on_points(ds, case, data):
    """Wherever the interval evaluation (outward-rounded or exact) claims a truth value, DuckDB agrees."""
    import sqlglot

    predicate, params = case
    vetted = vet_predicate(predicate, params, ds, "pid")
    row = {}
    for name in sorted(vetted.columns):
        info = COLUMNS[name]
        if "domain" in info:
            row[name] = data.draw(st.sampled_from(info["domain"]), label=name)
        elif info["kind"] == "integer":
            row[name] = data.draw(st.integers(*info["bounds"]), label=name)
        else:
            row[name] = data.draw(st.floats(*map(float, info["bounds"]), allow_nan=False), label=name)
    values = {}
    for name, kind in params.items():
        values[name] = (data.draw(st.sampled_from(["A", "B", "C"]), label=name) if kind == "string"
                        else data.draw(param_value, label=name))
        if kind == "integer":
            values[name] = float(round(values[name]))
    env = {**{k: (v if isinstance(v, str) else _point(float(v))) for k, v in row.items()},
           **{":" + k: (v if isinstance(v, str) else _point(float(v))) for k, v in values.items()}}
    tree = sqlglot.parse_one(predicate, read="duckdb")
    con = connect_locked()
    try:
        truth = _duck(con, vetted.condition_sql, row, values)
    finally:
        con.close()
    for widen in (True, False):
        claimed = _Eval(env, widen=widen).truth(tree)
        assert claimed is None or claimed == truth, (predicate, row, values, widen)


def test_rounding_is_outward(ds):
    """0.1 + 0.2 rounds up to 0.30000000000000004 in doubles (DuckDB: "true" below) though the exact sum is
    smaller: the outward interval straddles the literal, so the comparison stays unknown rather than wrong."""
    import sqlglot

    predicate = "income + :t >= 0.30000000000000004"
    vetted = vet_predicate(predicate, {"t": "number"}, ds, "pid")
    con = connect_locked()
    try:
        assert _duck(con, vetted.condition_sql, {"income": 0.1}, {"t": 0.2}) is True
    finally:
        con.close()
    tree = sqlglot.parse_one(predicate, read="duckdb")
    env = {"income": _point(0.1), ":t": _point(0.2)}
    assert _Eval(env, widen=True).truth(tree) is None
    assert _Eval(env, widen=False).truth(tree) is True


# --- over HTTP -----------------------------------------------------------------------------------------------------


def _rule(call, spec) -> str:
    with pytest.raises(ApiError) as e:
        call(spec)
    assert (e.value.code, e.value.status) == ("QUERY_REJECTED", 422)
    return str(e.value.details[0]["rule"])


def test_hide_membership_over_http(world):
    base = {"dataset": "tax_income", "subject_column": "person_id", "hide_membership": True}
    define = world.owner.define_verification
    assert _rule(define, {**base, "name": "registered", "subject_column": "id_number", "predicate": "exists"}) \
        == "membership.exists"
    assert _rule(define, {**base, "name": "adult", "predicate": "age >= 16"}) == "membership.always_true"
    with pytest.raises(ApiError) as e:
        define({**base, "name": "income_ge", "predicate": "monthly_income >= :t", "params": {"t": "number"}})
    assert e.value.details[0]["rule"] == "membership.always_true" and ":t = " in e.value.details[0]["hint"]
    assert _rule(define, {**base, "name": "any_district", "predicate": "district = :d OR district <> :d",
                          "params": {"d": "string"}}) == "membership.always_true"
    # questions some declared row answers "no" to, whatever the parameters
    close = define({**base, "name": "income_close", "predicate": "abs(monthly_income - :declared) <= 500",
                    "params": {"declared": "number"}})
    in_district = define({**base, "name": "lives_in", "predicate": "district = :d", "params": {"d": "string"}})
    assert close["hide_membership"] is True and in_district["hide_membership"] is True
    assert world.bank.verification("lives_in")["hide_membership"] is True
    assert world.bank.verification("income_at_least")["hide_membership"] is False  # the default
    row = next(iter(world.rows.values()))
    ag = world.agreement["id"]
    assert world.bank.check("lives_in", ag, row["person_id"], {"d": row["district"]}, consent_ref="c")["result"]
    assert world.bank.check("income_close", ag, row["person_id"], {"declared": row["monthly_income"] + 100},
                            consent_ref="c")["result"]
    names = {p["name"] for p in world.bank.verifications()}
    assert {"registered", "adult", "income_ge", "any_district"}.isdisjoint(names)
    denied = [e for e in world.parties.regulator.audit(limit=1000, action="verify.define")["entries"]
              if e["decision"] == "deny"]
    assert len(denied) == 4
    assert all((e["details"] if isinstance(e["details"], dict) else json.loads(e["details"]))["product"]
               in {"registered", "adult", "income_ge", "any_district"} for e in denied)
