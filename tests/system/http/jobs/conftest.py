"""Handler-level fixtures shared by ``train`` and ``code`` jobs: a metadata store with the synthetic
``tax_income`` registered, agreements made with `policies`, jobs submitted, charged and started through
`policies`, and a real `JobEnv`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

import policies
from catalog import _tables as catalog_tables
from catalog import registry
from catalog.columns import DatasetSpec
from catalog.datagen import Generated
from catalog.registry import Dataset
from catalog.store import make_engine
from policies import Actor, Agreement, Job
from sandbox.jobs import JobEnv
from sandbox.jobs.base import Handler

OWNER = Actor("city-tax-bureau", "owner")
GRANTEE = Actor("risk-lab", "operator")
FEATURES = ["district", "age", "gender", "industry", "monthly_income", "tax_paid", "social_insurance_months"]
GRANTED = [*FEATURES, "has_default"]


@dataclass
class World:
    engine: Engine
    dataset: Dataset
    env: JobEnv
    root: Path

    @property
    def datasets(self) -> dict[str, Dataset]:
        return {self.dataset.name: self.dataset}

    def agreement(self, **overrides: Any) -> Agreement:
        doc: dict[str, Any] = {
            "title": "SME credit model", "grantee": GRANTEE.name, "datasets": ["tax_income"],
            "columns": {"tax_income": list(GRANTED)}, "purposes": ["credit_risk"],
            "job_kinds": ["query", "train", "code"], "valid_from": "2026-01-01T00:00:00Z",
            "valid_until": "2030-01-01T00:00:00Z", "budget": {"epsilon": 20, "delta": "1e-4"},
            "min_group_units": 5, "approval": "auto_within_budget",
        }
        doc.update(overrides)
        ag = policies.create_agreement(self.engine, OWNER, doc)
        return policies.accept(self.engine, GRANTEE, ag.id)

    def env_for(self, ag: Agreement, **kw: Any) -> JobEnv:
        return replace(self.env, agreement=ag, **kw)

    def start(self, handler: Handler, ag: Agreement, spec: Mapping[str, Any]) -> Job:
        """Plan, submit (auto-approval charges), and move the job to ``running`` as the worker would."""
        plan = handler.plan(spec, ag, self.datasets)
        job = policies.submit(self.engine, GRANTEE, ag.id, handler.kind, dict(spec), datasets=plan.datasets,
                              columns=plan.columns, cost=plan.cost, purpose="credit_risk")
        return policies.start(self.engine, job.id, "test-worker")

    def spent(self, ag: Agreement) -> Any:
        return policies.read_budget(self.engine, OWNER, ag.id)


@pytest.fixture
def world(tmp_path: Path, city_data: Generated) -> World:
    engine = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    catalog_tables.metadata.create_all(engine)
    policies.metadata.create_all(engine)
    spec = DatasetSpec.model_validate(json.loads(city_data.tax_income_spec.read_text()))
    ds = registry.register(engine, spec, OWNER.name, tmp_path / "data", [city_data.tax_income.parent], 1 << 30).dataset
    env = JobEnv(data_dir=tmp_path / "data", models_dir=tmp_path / "models", work_dir=tmp_path / "work",
                 threads=1, memory_limit="1GB", timeout_s=600.0)
    env.models_dir.mkdir()
    env.work_dir.mkdir()
    return World(engine, ds, env, tmp_path)
