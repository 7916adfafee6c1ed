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


def _revision(engine, target: str, *, down: bool) -> None:
    from alembic import command

    cfg = schema.alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, target)


def test_job_outputs_migration_up_and_down(tmp_path):
    """0008 adds ``job_outputs`` (outputs awaiting release, owner-only detail) and its downgrade removes only it."""
    from sqlalchemy import inspect

    e = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    schema.upgrade(e)
    assert "job_outputs" in inspect(e).get_table_names()
    before = set(inspect(e).get_table_names())
    _revision(e, "0008_job_outputs@-1", down=True)
    assert set(inspect(e).get_table_names()) == before - {"job_outputs"}
    with e.connect() as conn:
        heads = {r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version")}
    assert "0008_job_outputs" not in heads and heads  # the other branches stay where they were
    schema.upgrade(e)  # and up again, to exactly the declared schema
    with e.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), schema.target_metadata) == []
    fks = inspect(e).get_foreign_keys("job_outputs")
    assert [(f["constrained_columns"], f["referred_table"]) for f in fks] == [(["job_id"], "jobs")]


def test_job_outputs_table_compiles_for_postgresql():
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateTable

    from policies import _tables as pt

    ddl = str(CreateTable(pt.job_outputs).compile(dialect=postgresql.dialect()))
    assert "REFERENCES jobs (id)" in ddl and "TIMESTAMP WITH TIME ZONE" in ddl
