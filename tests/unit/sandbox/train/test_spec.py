"""Bad training specs are refused with a clear DomainError before anything runs."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest

from catalog.errors import INVALID_REQUEST, POLICY_DENIED, DomainError
from sandbox.train import check_spec, parse_spec, plan_training

GRANTED = ["district", "age", "gender", "industry", "monthly_income", "tax_paid", "social_insurance_months",
           "has_default"]


def refused(raw: dict[str, Any]) -> DomainError:
    with pytest.raises(DomainError) as e:
        parse_spec(raw)
    assert e.value.code == INVALID_REQUEST
    return e.value


@pytest.mark.parametrize(("field", "value"), [
    ("epochs", 0), ("epochs", 51), ("epochs", 2.0), ("epochs", True),
    ("batch_size", 15), ("batch_size", 65537),
    ("epsilon", 0), ("epsilon", -1.0), ("epsilon", 20.5), ("epsilon", float("nan")), ("epsilon", "3"),
    ("delta", 0), ("delta", 2e-3), ("delta", 1.0),
    ("max_grad_norm", 0), ("learning_rate", 0), ("seed", -1),
    ("model", "random_forest"), ("features", []), ("features", "age"), ("label", "Has Default"),
])
def test_out_of_range_fields_are_refused(base_spec, field, value):
    err = refused({**base_spec, field: value})
    assert err.message == "the training spec is invalid"
    assert [d["field"] for d in err.details] == [field] or err.details[0]["field"].startswith(field)
    # The submitted value is never echoed back.
    assert "input" not in json.dumps(err.details)


def test_every_violation_is_reported_together(base_spec):
    err = refused({**base_spec, "epochs": 99, "batch_size": 1, "epsilon": 50.0})
    assert {d["field"] for d in err.details} == {"epochs", "batch_size", "epsilon"}


@pytest.mark.parametrize("raw_change", [
    {"unexpected": 1},
    {"hidden": 16},  # logistic regression has no hidden layer
    {"features": ["age", "age"]},
    {"features": ["age", "has_default"]},
])
def test_structurally_invalid_specs(base_spec, raw_change):
    refused({**base_spec, **raw_change})


def test_not_a_mapping():
    with pytest.raises(DomainError) as e:
        parse_spec(["not", "a", "dict"])  # type: ignore[arg-type]
    assert e.value.code == INVALID_REQUEST


def test_defaults_and_mlp_hidden(base_spec):
    s = parse_spec(base_spec)
    assert (s.learning_rate, s.seed, s.hidden_units) == (1.0, 0, None)
    m = parse_spec({**base_spec, "model": "mlp"})
    assert m.hidden_units == 32
    assert parse_spec({**base_spec, "model": "mlp", "hidden": 8}).hidden_units == 8
    assert s.sha256() != m.sha256()


def test_a_valid_spec_passes(tax_income, base_spec):
    check_spec(parse_spec(base_spec), tax_income, GRANTED)


@pytest.mark.parametrize(("features", "label", "code", "column"), [
    (["age", "employer_id"], "has_default", POLICY_DENIED, "employer_id"),  # join_key
    (["age", "id_number"], "has_default", POLICY_DENIED, "id_number"),  # never_output
    (["age", "person_id"], "has_default", POLICY_DENIED, "person_id"),  # id
    (["age", "no_such_column"], "has_default", POLICY_DENIED, "no_such_column"),
    (["age"], "monthly_income", INVALID_REQUEST, "monthly_income"),  # a measure is not a binary label
    (["age"], "district", INVALID_REQUEST, "district"),  # seven values
    (["district"], "age", INVALID_REQUEST, "age"),  # bounded dimension
])
def test_columns_and_label_are_checked(tax_income, base_spec, features, label, code, column):
    granted = [*GRANTED, *features, label]
    if code is POLICY_DENIED and column not in ("employer_id", "id_number", "person_id"):
        granted.remove(column)
    spec = parse_spec({**base_spec, "features": features, "label": label})
    with pytest.raises(DomainError) as e:
        check_spec(spec, tax_income, granted)
    assert e.value.code == code
    assert column in [d.get("column") for d in e.value.details]


def test_columns_outside_the_agreement_are_denied(tax_income, base_spec):
    spec = parse_spec(base_spec)
    with pytest.raises(DomainError) as e:
        check_spec(spec, tax_income, ["age", "has_default"])
    assert e.value.code == POLICY_DENIED
    denied = {d["column"] for d in e.value.details}
    assert denied == set(base_spec["features"]) - {"age"}
    with pytest.raises(DomainError) as e:
        check_spec(spec, tax_income, base_spec["features"])  # label not granted
    assert e.value.code == POLICY_DENIED and e.value.details[0]["field"] == "label"


def test_other_dataset_name_is_refused(tax_income, base_spec):
    spec = parse_spec({**base_spec, "dataset": "enterprise_registry"})
    with pytest.raises(DomainError) as e:
        check_spec(spec, tax_income, GRANTED)
    assert e.value.code == INVALID_REQUEST


def test_several_rows_per_unit_is_refused(register_table, base_spec):
    table = pa.table({"uid": ["a", "a", "b"], "x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    ds = register_table("multi_rows", table, {"uid": {"role": "id"},
                                              "x": {"role": "measure", "bounds": [0, 10]},
                                              "y": {"role": "dimension", "domain": [0, 1]}}, 3)
    spec = parse_spec({**base_spec, "dataset": "multi_rows", "features": ["x"], "label": "y"})
    with pytest.raises(DomainError) as e:
        check_spec(spec, ds, ["x", "y"])
    assert e.value.code == INVALID_REQUEST
    assert "max_rows_per_unit" in e.value.details[0]["problem"]


def test_plan_refuses_impossible_settings(base_spec):
    spec = parse_spec({**base_spec, "batch_size": 4096})
    with pytest.raises(DomainError) as e:
        plan_training(spec, 1000)
    assert e.value.code == INVALID_REQUEST and e.value.details[0]["field"] == "batch_size"
    many_steps = parse_spec({**base_spec, "batch_size": 16, "epochs": 50})
    with pytest.raises(DomainError) as e:
        plan_training(many_steps, 1_000_000)
    assert e.value.code == INVALID_REQUEST
    with pytest.raises(DomainError):
        plan_training(parse_spec(base_spec), 0)
