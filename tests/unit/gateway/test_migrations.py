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
    _revision(e, "0010_idempotency_keys@-3", down=True)  # 0010 (idempotency), 0009 (leases) sit on 0008
    assert set(inspect(e).get_table_names()) == before - {"job_outputs", "idempotency_keys"}
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


def test_job_leases_migration_up_and_down(tmp_path):
    """0009 adds the worker lease to ``jobs`` (owner, expiry, an index for the sweeper); its downgrade removes only
    those, keeping the rows, and upgrading again gives exactly the declared schema."""
    import datetime as dt

    from sqlalchemy import inspect

    e = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    schema.upgrade(e)
    cols = {c["name"] for c in inspect(e).get_columns("jobs")}
    assert {"lease_owner", "lease_expires_at"} <= cols
    assert "ix_jobs_state_lease" in {i["name"] for i in inspect(e).get_indexes("jobs")}
    now = dt.datetime(2026, 12, 3, tzinfo=dt.UTC).replace(tzinfo=None)
    with e.begin() as conn:  # a row survives the round trip
        conn.exec_driver_sql("INSERT INTO agreements (id, owner, grantee, title, state, version, document_hash, "
                             "document_json, valid_from, valid_until, created_at, updated_at, expired_recorded) VALUES "
                             "('ag', 'o', 'g', 't', 'active', 1, 'h', '{}', ?, ?, ?, ?, 0)", (now, now, now, now))
        conn.exec_driver_sql("INSERT INTO jobs (id, agreement_id, kind, spec_json, spec_hash, fingerprints_json, "
                             "columns_json, inline, state, created_by, created_at, updated_at, cost_epsilon, "
                             "cost_delta, lease_owner, lease_expires_at) VALUES ('j', 'ag', 'query', '{}', 'h', "
                             "'{}', '{}', 0, 'running', 'g', ?, ?, '1', '0', 'p', ?)", (now, now, now))
    _revision(e, "0010_idempotency_keys@-2", down=True)  # 0010 sits on 0009 and goes first
    assert not {"lease_owner", "lease_expires_at"} & {c["name"] for c in inspect(e).get_columns("jobs")}
    with e.connect() as conn:
        assert conn.exec_driver_sql("SELECT state FROM jobs WHERE id = 'j'").scalar() == "running"
        heads = {r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version")}
    assert "0008_job_outputs" in heads and "0009_job_leases" not in heads
    schema.upgrade(e)
    with e.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), schema.target_metadata) == []


def test_job_lease_columns_compile_for_postgresql():
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateTable

    from policies import _tables as pt

    ddl = str(CreateTable(pt.jobs).compile(dialect=postgresql.dialect()))
    assert "lease_owner VARCHAR(128)" in ddl and "lease_expires_at TIMESTAMP WITH TIME ZONE" in ddl


def test_idempotency_keys_migration_up_and_down(tmp_path):
    """0010 adds ``idempotency_keys`` (a charging call's first answer per caller and key); its downgrade removes
    only that table and upgrading again gives exactly the declared schema."""
    from sqlalchemy import inspect

    e = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    schema.upgrade(e)
    assert "idempotency_keys" in inspect(e).get_table_names()
    pk = inspect(e).get_pk_constraint("idempotency_keys")["constrained_columns"]
    assert pk == ["principal", "key"]
    before = set(inspect(e).get_table_names())
    _revision(e, "0010_idempotency_keys@-1", down=True)
    assert set(inspect(e).get_table_names()) == before - {"idempotency_keys"}
    with e.connect() as conn:
        heads = {r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version")}
    assert "0009_job_leases" in heads and "0010_idempotency_keys" not in heads
    schema.upgrade(e)
    with e.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), schema.target_metadata) == []
