from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.settings import Settings


@pytest.mark.parametrize("kw, problem", [
    ({"import_roots": [Path("/")]}, "must not include '/'"),
    ({"import_roots": [Path("/tmp/h/data")]}, "inside data/"),
    ({"import_roots": [Path("/tmp")]}, "must not contain VEILBOX_HOME"),
    ({"env": "production", "latency_bucket_ms": 0}, "cannot be disabled"),
    ({"env": "production", "database_url": "sqlite:///:memory:"}, "in-memory"),
    ({"host": "0.0.0.0"}, "without TLS"),
])
def test_unsafe_combinations_are_refused(kw, problem):
    with pytest.raises(ValidationError, match=problem):
        Settings(home=Path("/tmp/h"), **kw)


def test_env_prefix_and_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("VEILBOX_HOME", str(tmp_path))
    monkeypatch.setenv("VEILBOX_LATENCY_BUCKET_MS", "0")
    s = Settings()
    assert s.home == tmp_path and s.latency_bucket_ms == 0
    assert s.db_url.startswith("sqlite:///") and s.effective_import_roots == [tmp_path / "import"]
    assert Settings(host="0.0.0.0", tls_terminated=True).host == "0.0.0.0"
