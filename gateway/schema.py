"""The metadata schema: every package's tables, migrated with Alembic (`gateway/migrations`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, MetaData

import policies
from catalog import _tables as catalog_tables
from catalog import models as _models  # noqa: F401  (declares the model registry on the catalog's metadata)
from gateway import _tables as gateway_tables

target_metadata: list[MetaData] = [catalog_tables.metadata, policies.metadata, gateway_tables.metadata]

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the store to the newest schema (idempotent)."""
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")  # one branch per package change, no merge needed
