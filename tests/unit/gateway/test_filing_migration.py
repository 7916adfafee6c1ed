"""Migration 0013 (filing, 备案): agreements in force before it are filed with a number, keep their state, and get
one ``agreement.migrate`` audit entry; proposed ones stay unfiled; down and up again give the declared schema."""

from __future__ import annotations

import datetime as dt

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from gateway import schema
from gateway.context import init_home, open_context
from gateway.services.agreements import note_migrations


def _down_0013(engine) -> None:
    """Undo 0013 and the revisions built on it (``x@-1`` steps its branch's head back by one)."""
    cfg = schema.alembic_config()
    script = ScriptDirectory.from_config(cfg)
    rev = "0013_agreement_filing"
    built_on = {rev} | {r.revision for r in script.iterate_revisions("heads", rev)}  # the lower end is excluded
    while True:
        with engine.begin() as conn:
            if not built_on & set(MigrationContext.configure(conn).get_current_heads()):
                return
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0013_agreement_filing@-1")


def test_agreements_in_force_are_filed_and_noted_once(settings):
    init_home(settings)
    ctx = open_context(settings)
    try:
        _down_0013(ctx.engine)
        now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
        with ctx.engine.begin() as conn:
            for aid, state in (("agr_a", "active"), ("agr_s", "suspended"), ("agr_p", "proposed")):
                conn.execute(text(
                    "INSERT INTO agreements (id, owner, grantee, title, state, version, document_hash, document_json, "
                    "valid_from, valid_until, created_at, updated_at, accepted_at, expired_recorded) VALUES "
                    "(:id, 'o', 'g', 't', :state, 1, 'h', '{}', :t, :t, :t, :t, :t, false)"),
                    {"id": aid, "state": state, "t": now})
        schema.upgrade(ctx.engine)
        with ctx.engine.connect() as conn:
            rows = {r.id: r for r in conn.execute(text(
                "SELECT id, state, filing_number, filed_at, filing_required FROM agreements"))}
            assert compare_metadata(MigrationContext.configure(conn), schema.target_metadata) == []
        assert {k: r.state for k, r in rows.items()} == {"agr_a": "active", "agr_s": "suspended", "agr_p": "proposed"}
        numbers = {rows["agr_a"].filing_number, rows["agr_s"].filing_number}
        assert all(n and n.startswith("BA-") and len(n) == len("BA-2026-000001") for n in numbers) and len(numbers) == 2
        assert rows["agr_p"].filing_number is None and not rows["agr_p"].filing_required

        note_migrations(ctx)
        note_migrations(ctx)  # once per agreement
        entries = [e for e in ctx.audit.entries(0, 1000)[0] if e["action"] == "agreement.migrate"]
        assert sorted(e["agreement_id"] for e in entries) == ["agr_a", "agr_s"]
        assert {e["role"] for e in entries} == {"system"}
        assert ctx.audit.verify().ok
    finally:
        ctx.close()
