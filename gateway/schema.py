"""The metadata schema: every package's tables, migrated with Alembic (`gateway/migrations`)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData

import policies
from catalog import _tables as catalog_tables
from catalog import keyring as _keyring  # noqa: F401  (declares the wrapped keys on the catalog's metadata)
from catalog import models as _models  # noqa: F401  (declares the model registry on the catalog's metadata)
from gateway import _tables as gateway_tables

target_metadata: list[MetaData] = [catalog_tables.metadata, policies.metadata, gateway_tables.metadata]

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


#: Arbitrary key of the PostgreSQL advisory lock that serialises schema upgrades across processes.
_UPGRADE_LOCK = 0x7665696C  # "veil"


def _prepare_postgresql(conn: Connection) -> None:
    """Serialise upgrades (several processes open one store at once: ``serve --workers N``, ``veilbox worker``)
    and give ``alembic_version`` room for our revision names (Alembic creates it as VARCHAR(32); SQLite ignores
    lengths, PostgreSQL refuses a longer name)."""
    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_UPGRADE_LOCK})")
    conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS alembic_version (version_num VARCHAR(128) NOT NULL, "
                         "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))")
    length = conn.exec_driver_sql(
        "SELECT character_maximum_length FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = 'alembic_version' AND column_name = 'version_num'").scalar()
    if length is not None and length < 128:
        conn.exec_driver_sql("ALTER TABLE alembic_version ALTER COLUMN version_num TYPE VARCHAR(128)")


@cache
def _heads() -> frozenset[str]:
    """The newest revisions this code knows (read once per process: the scripts do not change under it)."""
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def upgrade(engine: Engine) -> None:
    """Bring the store to the newest schema (idempotent; concurrent callers on one PostgreSQL store wait for each
    other). A store already at the newest revisions is left alone without loading the migration scripts (every
    process opening the store calls this)."""
    cfg = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            _prepare_postgresql(conn)
        if frozenset(MigrationContext.configure(conn).get_current_heads()) == _heads():
            return
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")  # one branch per package change, no merge needed
