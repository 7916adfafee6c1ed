"""What every `veilbox` sub-command shares: the gateway connection (``--url``/``--token``) and output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from veilbox.client import Client

out = Console()
err = Console(stderr=True)

HomeOpt = Annotated[Path | None, typer.Option("--home", help="service home (default $VEILBOX_HOME or ./.veilbox)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable JSON output")]


class _State:
    url: str = "http://127.0.0.1:8000"
    token: str | None = None


state = _State()


def client() -> Client:
    if not state.token:
        err.print("[red]no token:[/] pass --token or set VEILBOX_TOKEN")
        raise typer.Exit(2)
    return Client(state.url, state.token)


def emit(data: Any, as_json: bool, table: Table | None = None) -> None:
    if as_json or table is None:
        out.print_json(json.dumps(data, default=str))
    else:
        out.print(table)
