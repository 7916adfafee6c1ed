"""Throwaway audit logs for the anchoring and archive tests: a template store of ``n`` entries written once per
module, copied for each test (a fresh file, so a test may tamper with its copy)."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

from catalog.store import make_engine
from gateway import _tables as t
from gateway.audit import AuditEvent, AuditLog
from gateway.keys import Keys


def audit_template(d: Path, n: int, every: int) -> tuple[Path, Keys]:
    """A store of ``n`` entries (checkpoints every ``every``) under ``d``, and the keys that signed it."""
    keys = Keys.generate()
    e = make_engine(f"sqlite:///{d / 'tpl.db'}")
    t.metadata.create_all(e)
    log = AuditLog(e, keys, "sha256", every)
    for i in range(n):
        log.append(AuditEvent(actor=f"user{i % 3}", role="operator", action="query.run", details={"i": i}))
    e.dispose()
    con = sqlite3.connect(d / "tpl.db")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return d, keys


def copied_log(template: tuple[Path, Keys], tmp_path: Path, every: int) -> Iterator[AuditLog]:
    """A copy of the template's store, open as a log (a generator for a pytest fixture)."""
    d, keys = template
    p = tmp_path / f"copy-{uuid.uuid4().hex}.db"
    shutil.copy(d / "tpl.db", p)
    e = make_engine(f"sqlite:///{p}")
    yield AuditLog(e, keys, "sha256", every)
    e.dispose()
