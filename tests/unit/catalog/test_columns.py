import pytest
from pydantic import ValidationError

from catalog.columns import ColumnSpec, DatasetSpec, Role


def spec(**cols):
    return {"name": "t", "source": "/x.parquet", "columns": {"uid": {"role": "id"}, **cols}}


@pytest.mark.parametrize("col, problem", [
    ({"role": "measure"}, "needs bounds"),
    ({"role": "measure", "bounds": [5, 1]}, "lower < upper"),
    ({"role": "measure", "bounds": [1, 1]}, "lower < upper"),
    ({"role": "measure", "bounds": [0, float("inf")]}, "finite"),
    ({"role": "dimension"}, "exactly one of domain or bounds"),
    ({"role": "dimension", "domain": ["a"], "bounds": [0, 1]}, "exactly one"),
    ({"role": "dimension", "domain": []}, "empty"),
    ({"role": "dimension", "domain": ["a", "a"]}, "unique"),
    ({"role": "dimension", "domain": ["a", 1]}, "one type"),
    ({"role": "id", "bounds": [0, 1]}, "neither domain nor bounds"),
    ({"role": "never_output", "domain": ["x"]}, "neither domain nor bounds"),
    ({"role": "wizard"}, "role"),
    ({"role": "measure", "bounds": [0, 1], "extra": 1}, "Extra inputs"),
])
def test_bad_column_declarations_are_refused(col, problem):
    with pytest.raises(ValidationError, match=problem):
        DatasetSpec.model_validate(spec(c=col))


def test_exactly_one_id_column():
    with pytest.raises(ValidationError, match="exactly one column"):
        DatasetSpec.model_validate({"name": "t", "source": "/x",
                                    "columns": {"a": {"role": "dimension", "domain": [1]}}})
    with pytest.raises(ValidationError, match="exactly one column"):
        DatasetSpec.model_validate(spec(other={"role": "id"}))


@pytest.mark.parametrize("name", ["Tax", "1tax", "tax-income", "tax income", "t" * 64, "taxіncome", ""])
def test_names_are_plain_identifiers(name):
    with pytest.raises(ValidationError):
        DatasetSpec.model_validate({**spec(), "name": name})


def test_good_declaration():
    s = DatasetSpec.model_validate(spec(age={"role": "dimension", "bounds": [16, 100]},
                                        inc={"role": "measure", "bounds": [0, 2e5]}))
    assert s.columns["age"].role is Role.DIMENSION
    assert s.max_rows_per_unit == 1
    assert ColumnSpec(role=Role.MEASURE, bounds=(0, 1)).bounds == (0, 1)
