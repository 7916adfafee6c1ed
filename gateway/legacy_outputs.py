"""Import the job side files of an older home into ``job_outputs`` (once, when the service opens the home).

Before migration ``0008_job_outputs`` a custom job's output awaiting the owner's release lived in
``work/pending/<job id>.json`` and the owner-only cause of a failure or incident in ``work/detail/<job id>.json``,
written after the job's state change. Now both are rows written in the same transaction as that change
(`policies.jobs.succeed`/`fail`/`release`), and every read goes to the row. `import_side_files` moves any files
left by an older release into rows — an output awaiting release only for a job still ``succeeded`` (a file next
to a released or failed job is what a crash between the state change and the file removal left behind), a
detail for any stored job — never overwriting a row, and then deletes the files. It is idempotent and runs in
`gateway.context.open_context`, because the Alembic migration sees only the database, not the work directory.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, update

from policies import _tables as pt

log = logging.getLogger("veilbox.store")

__all__ = ["SIDE_DIRS", "import_side_files"]

SIDE_DIRS = {"pending": "payload", "detail": "owner_detail"}  # work/<dir>/<job id>.json -> job_outputs column


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        log.warning("unreadable job side file %s left in place", path)
        return None


def import_side_files(engine: Engine, work_dir: Path) -> int:
    """Move ``work/pending`` and ``work/detail`` files into ``job_outputs``; returns how many were imported."""
    files = [(d, column, p) for d, column in SIDE_DIRS.items() if (work_dir / d).is_dir()
             for p in sorted((work_dir / d).glob("*.json"))]
    if not files:
        return 0
    now = dt.datetime.now(dt.UTC)
    o, j = pt.job_outputs.c, pt.jobs.c
    done: list[Path] = []
    imported = 0
    with engine.begin() as conn:
        for d, column, path in files:
            value = _read(path)
            if value is None:
                continue
            state = conn.execute(select(j.state).where(j.id == path.stem)).scalar_one_or_none()
            done.append(path)
            if state is None or (d == "pending" and state != "succeeded"):
                continue  # no such job, or the output was released or refused already
            values: dict[str, Any] = {column: json.dumps(value, sort_keys=True)}
            if d == "pending":
                values["kind"] = str(value.get("kind"))[:16] if isinstance(value, dict) else None
            row = conn.execute(select(o.payload, o.owner_detail).where(o.job_id == path.stem)).first()
            if row is None:
                conn.execute(pt.job_outputs.insert().values(job_id=path.stem, created_at=now, updated_at=now,
                                                            **values))
            elif getattr(row, column) is None:
                conn.execute(update(pt.job_outputs).where(o.job_id == path.stem).values(updated_at=now, **values))
            else:
                continue  # the row is newer than the file
            imported += 1
    for path in done:
        path.unlink(missing_ok=True)
    for d in SIDE_DIRS:
        try:
            (work_dir / d).rmdir()
        except OSError:
            pass  # absent, or holds a file that could not be read
    if imported:
        log.info("imported %d job side file(s) from %s into job_outputs", imported, work_dir)
    return imported
