"""Fixtures of ``train`` job tests.

The store, agreements and `JobEnv` come from ``tests/system/http/jobs/conftest.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

FEATURES = ["district", "age", "gender", "industry", "monthly_income", "tax_paid", "social_insurance_months"]


@pytest.fixture
def train_spec() -> dict[str, Any]:
    return {"dataset": "tax_income", "features": list(FEATURES), "label": "has_default",
            "model": "logistic_regression", "epochs": 1, "batch_size": 256, "epsilon": 2.0, "delta": 1e-5,
            "max_grad_norm": 1.0}
