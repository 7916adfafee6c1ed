"""Every migration goes up, all the way down and up again, on SQLite and on PostgreSQL, ending at exactly the
schema the code declares."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from catalog.store import make_engine
from gateway import schema


def _url(store: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return request.getfixturevalue("pg_url") if store == "postgresql" else f"sqlite:///{tmp_path / 'm.db'}"


def _diff(engine: Engine) -> list:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), schema.target_metadata))


def _downgrade_to_base(engine: Engine) -> None:
    cfg = schema.alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")


def test_migrations_up_down_up(store: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    engine = make_engine(_url(store, request, tmp_path))
    try:
        schema.upgrade(engine)
        assert _diff(engine) == []
        declared = {tbl.name for md in schema.target_metadata for tbl in md.tables.values()}
        assert declared <= set(inspect(engine).get_table_names())
        _downgrade_to_base(engine)
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}  # every table of ours is gone
        schema.upgrade(engine)
        schema.upgrade(engine)  # idempotent
        assert _diff(engine) == []
    finally:
        engine.dispose()


def test_concurrent_upgrades_of_one_store_wait_for_each_other(store: str, request: pytest.FixtureRequest,
                                                            tmp_path: Path) -> None:
    """Several processes opening one fresh store at once (``serve --workers N``) all end at the same schema."""
    import threading

    url = _url(store, request, tmp_path)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def opener() -> None:
        engine = make_engine(url)
        try:
            barrier.wait()
            schema.upgrade(engine)
        except BaseException as e:  # reported below
            errors.append(e)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    engine = make_engine(url)
    try:
        assert _diff(engine) == []
    finally:
        engine.dispose()
