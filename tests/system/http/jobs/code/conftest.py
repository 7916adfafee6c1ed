"""Fixtures of ``code`` job tests.

The store, agreements and `JobEnv` come from ``tests/system/http/jobs/conftest.py``.
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def code_limits() -> dict[str, Any]:
    """Generous limits so a loaded machine cannot make the happy paths time out."""
    return {"wall_seconds": 30, "cpu_seconds": 20, "memory_bytes": 1 << 30}
