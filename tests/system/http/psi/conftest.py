"""Fixtures for PSI and anonymous verification: the tax bureau's data, a bank agreement granting the three job
kinds, the raw rows (the test's own knowledge), and small buckets (k = 64) so tests stay fast."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from gateway.settings import Settings

K = 64
INCOME_AT_LEAST = {"name": "income_at_least", "dataset": "tax_income", "subject_column": "person_id",
                   "predicate": "monthly_income >= :threshold", "params": {"threshold": "number"}}
PSI_KINDS = ["verify", "psi_size", "psi_members", "verify_anonymous"]


@pytest.fixture
def settings(tmp_path: Path, city_data: Any, crypto_suite: str) -> Settings:
    return Settings(home=tmp_path / "home", import_roots=[city_data.tax_income.parent.parent, tmp_path / "import"],
                    latency_bucket_ms=0, checkpoint_every=5, env="test", anon_min_bucket=K, suite=crypto_suite)


@dataclass
class PsiWorld:
    parties: Any
    agreement: dict[str, Any]
    rows: dict[str, dict[str, Any]]

    @property
    def bank(self) -> Any:
        return self.parties.bank

    def agreement_with(self, kinds: list[str], **overrides: Any) -> dict[str, Any]:
        return self.parties.agreement("icbc-wuxi", job_kinds=kinds, **overrides)


@pytest.fixture
def psi_world(parties: Any, city_data: Any) -> PsiWorld:
    parties.owner.define_verification(INCOME_AT_LEAST)
    ag = parties.agreement("icbc-wuxi", job_kinds=PSI_KINDS,
                           quotas={"calls_per_day": 10000, "verify_per_subject_per_day": 3,
                                   "distinct_params_per_subject": 2})
    rows = {r["person_id"]: r for r in pq.read_table(city_data.tax_income).to_pylist()}
    return PsiWorld(parties, ag, rows)


class Recording(httpx.HTTPTransport):
    """A real transport that keeps every request body the bank sends (to check no id leaves in clear)."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(request.read())
        return super().handle_request(request)
