"""``VEILBOX_GRADE_EPSILON_CEILINGS``: the service's ε ceilings per grade (docs/grades.md), read exactly."""

from fractions import Fraction
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.settings import Settings


def test_the_ceilings_are_read_from_json_and_exact(monkeypatch):
    monkeypatch.setenv("VEILBOX_GRADE_EPSILON_CEILINGS", '{"important": 0.1, "general": null}')
    assert Settings(home=Path("/tmp/h")).grade_ceilings == {"important": Fraction(1, 10), "general": None}
    monkeypatch.delenv("VEILBOX_GRADE_EPSILON_CEILINGS")
    assert Settings(home=Path("/tmp/h")).grade_ceilings == {}  # the table's defaults


@pytest.mark.parametrize("bad", [{"important": -1}, {"important": float("inf")}, {"core": 1}])
def test_bad_ceilings_are_refused(bad):
    with pytest.raises(ValidationError):
        Settings(home=Path("/tmp/h"), grade_epsilon_ceilings=bad)
