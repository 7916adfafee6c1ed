"""One SQL length limit: ``VEILBOX_MAX_SQL_CHARS`` (default `sandbox.sql.vet.MAX_SQL_CHARS`, also its ceiling) is
what the vetter, the query spec and the HTTP routes enforce, refused as ``QUERY_REJECTED`` rule ``too_long``."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from catalog.errors import DomainError
from gateway.settings import Settings
from sandbox.jobs.query import require_sql_length
from sandbox.sql.vet import MAX_SQL_CHARS, check_length
from veilbox.client import ApiError

LIMIT = 80


@pytest.fixture
def settings(tmp_path: Path, city_data) -> Settings:
    return Settings(home=tmp_path / "home", import_roots=[city_data.tax_income.parent.parent, tmp_path / "import"],
                    latency_bucket_ms=0, checkpoint_every=5, env="test", max_sql_chars=LIMIT)


def _padded(n: int) -> str:
    sql = "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district"
    return sql + " " * (n - len(sql))


def test_the_setting_defaults_to_the_one_constant_which_is_its_ceiling(tmp_path):
    assert Settings(home=tmp_path).max_sql_chars == MAX_SQL_CHARS
    with pytest.raises(ValidationError):
        Settings(home=tmp_path, max_sql_chars=MAX_SQL_CHARS + 1)


def test_the_spec_check_reports_what_the_vetter_reports():
    spec = {"sql": _padded(LIMIT + 1), "epsilon": 1}
    require_sql_length({**spec, "sql": _padded(LIMIT)}, LIMIT)
    with pytest.raises(DomainError) as spec_error:
        require_sql_length(spec, LIMIT)
    with pytest.raises(DomainError) as vet_error:
        check_length(spec["sql"], LIMIT)
    assert spec_error.value.code == "QUERY_REJECTED" and spec_error.value.details == vet_error.value.details
    assert [d["rule"] for d in spec_error.value.details] == ["too_long"]


def test_queries_previews_and_jobs_longer_than_the_setting_are_rejected(parties):
    ag = parties.agreement()["id"]
    client = parties.operator
    assert client.query(ag, _padded(LIMIT), 1)["rows"]
    for call in (lambda: client.query(ag, _padded(LIMIT + 1), 1),
                 lambda: client.preview_query(ag, _padded(LIMIT + 1), 1),
                 lambda: client.submit_job(ag, "query", {"sql": _padded(LIMIT + 1), "epsilon": 1})):
        with pytest.raises(ApiError) as e:
            call()
        assert e.value.code == "QUERY_REJECTED"
        assert [d["rule"] for d in e.value.details] == ["too_long"]
