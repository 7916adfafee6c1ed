"""The Alembic migrations build exactly the schema the code declares."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from catalog.store import make_engine
from gateway import schema


def test_migrations_match_metadata(tmp_path):
    e = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    schema.upgrade(e)
    schema.upgrade(e)  # idempotent
    with e.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), schema.target_metadata)
    assert diff == []
