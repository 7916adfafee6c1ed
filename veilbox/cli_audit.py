"""`veilbox audit anchor|archive|verify-archive` and `veilbox audit verify --anchors`: anchoring the signed audit
head (存证) and the archive of signed audit segments (`gateway.anchoring`, `gateway.archive`).

Each prints its result as JSON (``--json`` is accepted for symmetry). `anchor`, `archive` and `verify-archive` work
on a local home (``--home``, default ``$VEILBOX_HOME``): they need the
store and the signing key. `verify --anchors FILE` checks a local home, or — without ``--home`` — the chain the
gateway exports (regulator), recomputed here, against the public key given with ``--public-key`` (else the
gateway's own). Registered on ``veilbox audit`` by `veilbox.cli`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from veilbox import _cli_common as base
from vocab.i18n import _


def _open(home: Path | None) -> Any:
    from gateway.context import open_context
    from gateway.settings import Settings

    return open_context(Settings(home=home) if home is not None else Settings())


def _finish(report: dict[str, Any]) -> None:
    base.out.print_json(json.dumps(report))
    if not report.get("ok", True):
        raise typer.Exit(1)


def verify_anchors(home: Path | None, anchors: Path, public_key: Path | None) -> None:
    """`veilbox audit verify --anchors FILE`: prove the chain extends every anchored head; exit 1 naming the
    anchor's line and the seq when it does not."""
    from cryptosuite import load_verify_key
    from gateway.anchoring import check_anchors, read_anchors

    pinned = load_verify_key(public_key.read_text()) if public_key is not None else None
    if home is not None:
        ctx = _open(home)
        try:
            report = check_anchors(ctx.audit.iter_all(), read_anchors(anchors), pinned or ctx.keys.public,
                                   ctx.audit.alg).as_dict()
            chain = ctx.audit.verify().as_dict()
        finally:
            ctx.close()
    else:
        import io

        import pyarrow.parquet as pq

        with base.client() as c:
            key = c.audit_public_key()
            data = c.audit_export()
            chain = dict(c.audit_verify())
        table = pq.read_table(io.BytesIO(data))

        def rows() -> Iterator[dict[str, Any]]:
            for batch in table.to_batches():
                yield from batch.to_pylist()

        report = check_anchors(rows(), read_anchors(anchors), pinned or load_verify_key(key["pem"]),
                               key["hash_alg"]).as_dict()
    report["chain"] = chain
    report["ok"] = bool(report["ok"] and chain["ok"])
    _finish(report)


def register(audit_app: typer.Typer) -> None:
    @audit_app.command("anchor", help=_("Anchor the signed audit head (存证) at the sink now, even when it did not "
                                        "advance; exit 1 if every\n"
               "attempt failed."))
    def audit_anchor(
        home: base.HomeOpt = None,
        sink: Annotated[str | None, typer.Option(
            "--sink", help=_("file:/path/anchors.jsonl or an https:// webhook (default VEILBOX_ANCHOR_SINK)"))] = None,
        as_json: base.JsonOpt = False,
    ) -> None:
        """Anchor the signed audit head (存证) at the sink now, even when it did not advance; exit 1 if every
        attempt failed."""
        from gateway.anchoring import Anchorer, sink_from_settings

        ctx = _open(home)
        try:
            target = sink_from_settings(ctx.settings, sink)
            if target is None:
                raise base.CliError(_("no anchoring sink is configured"), _("set VEILBOX_ANCHOR_SINK or give --sink"))
            result = Anchorer(ctx.audit, target).anchor(force=True).as_dict()
        finally:
            ctx.close()
        result["sink"] = target.label
        result["ok"] = result["outcome"] in ("sent", "empty")
        _finish(result)

    @audit_app.command("archive", help=_("Write the audit entries not archived yet as signed segments under the home's "
                                         "archive/audit/ (the live\n"
               "log keeps them)."))
    def audit_archive(
        home: base.HomeOpt = None,
        before: Annotated[str | None, typer.Option(
            "--before", help=_("archive the entries older than this date or time (ISO-8601, UTC without an offset)"))]
        = None,
        upto: Annotated[int | None, typer.Option("--upto", min=1, help=_("archive the entries up to this seq"))] = None,
        segment_size: Annotated[int, typer.Option("--segment-size", min=1, help=_("entries per segment"))] = 10_000,
        as_json: base.JsonOpt = False,
    ) -> None:
        """Write the audit entries not archived yet as signed segments under the home's archive/audit/ (the live
        log keeps them)."""
        from gateway.archive import archive, archive_dir

        if (before is None) == (upto is None):
            raise base.CliError(_("nothing says what to archive"), _("give exactly one of --before and --upto"))
        when = None
        if before is not None:
            when = dt.datetime.fromisoformat(before)
            when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
        ctx = _open(home)
        try:
            root = archive_dir(ctx.settings)
            made = archive(ctx.audit, root, upto_seq=upto, before=when, segment_size=segment_size)
        finally:
            ctx.close()
        _finish({"ok": True, "dir": str(root), "segments": [
            {k: m[k] for k in ("file", "first_seq", "last_seq", "count", "last_hash")} for m in made]})

    @audit_app.command("verify-archive", help=_("Check every archived segment's signature, the chain across segments "
                                                "and into the live log; exit 1\n"
               "naming the first bad segment and seq."))
    def audit_verify_archive(
        directory: Annotated[Path | None, typer.Argument(
            help=_("the archive folder (default the home's archive/audit/)"))] = None,
        home: base.HomeOpt = None,
        public_key: Annotated[Path | None, typer.Option(
            "--public-key", help=_("verify with this PEM public key instead of the home's"))] = None,
        live: Annotated[bool, typer.Option(
            "--live/--no-live", help=_("also check the chain continues into the home's live log"))] = True,
        as_json: base.JsonOpt = False,
    ) -> None:
        """Check every archived segment's signature, the chain across segments and into the live log; exit 1
        naming the first bad segment and seq."""
        from cryptosuite import load_verify_key
        from gateway.archive import archive_dir, verify_archive

        if directory is not None and public_key is not None and not live:  # offline: no home needed
            report = verify_archive(directory, load_verify_key(public_key.read_text())).as_dict()
        else:
            ctx = _open(home)
            try:
                root = directory if directory is not None else archive_dir(ctx.settings)
                pk = load_verify_key(public_key.read_text()) if public_key is not None else ctx.keys.public
                report = verify_archive(root, pk, ctx.audit if live else None).as_dict()
            finally:
                ctx.close()
        _finish(report)
