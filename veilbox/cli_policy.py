"""`veilbox policy …`: the service's policy tables, read-only. ``veilbox policy grades``: the grade-dependent
controls (分级分类, docs/grades.md) as the service enforces them.

Registered on ``veilbox policy`` by `veilbox.cli`; shares its connection, output and error conventions
(`veilbox._cli_common`).
"""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from veilbox import _cli_common as base
from vocab.i18n import _

policy_app = typer.Typer(help=_("The service's policy tables (read-only)."), no_args_is_help=True)


def _grades_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(_("grade"), _("may be granted"), _("approval modes"), _("ε ceiling"), _("sensitive key: min group"))
    for r in rows:
        t.add_row(
            r["grade"],
            _("yes") if r["grantable"] else _("never"),
            ", ".join(r["approvals"]) or "-",
            r["epsilon_ceiling"] if r["epsilon_ceiling"] is not None else _("none"),
            str(r["sensitive_key_min_group_units"]) if r["grantable"] else "-",
        )
    return t


@policy_app.command("grades", help=_("What each dataset grade allows: granting, approval, ε ceiling, sensitive keys."))
def grades(as_json: base.JsonOpt = False) -> None:
    """What each dataset grade allows: granting, approval, ε ceiling, sensitive keys."""
    with base.client() as c:
        rows = c.policy_grades()
    base.emit(rows, as_json, _grades_table(rows))


def register(app: typer.Typer) -> None:
    """Add ``veilbox policy`` to the CLI."""
    app.add_typer(policy_app, name="policy")
