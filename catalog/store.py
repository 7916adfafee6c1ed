"""The metadata store connection shared by every package (SQLite in WAL mode, or PostgreSQL).

SQLite is opened so that every transaction is ``BEGIN IMMEDIATE``: writers serialise on the database lock, so
a read-check-write sequence inside ``engine.begin()`` (a ledger debit, an audit append) cannot interleave with
another writer. Commits use ``synchronous=FULL``: a committed row survives power loss before the response is
sent. On PostgreSQL the same code paths take row locks with ``SELECT … FOR UPDATE``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, echo: bool = False, *, pool_size: int = 5, max_overflow: int = 10,
                pool_timeout: float = 30.0) -> Engine:
    """The store's engine. ``pool_size``, ``max_overflow`` and ``pool_timeout`` size PostgreSQL's connection pool
    of this process (every process of a deployment has its own); SQLite ignores them."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": 60},
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow,
                         pool_timeout=pool_timeout)
