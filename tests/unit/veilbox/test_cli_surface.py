"""The CLI's surface: help text on every command, argument and option, and `--json` on every command."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click
import typer

from veilbox.cli import app

#: Long-running processes: they print logs, not a result.
NO_JSON = {"veilbox serve", "veilbox worker", "veilbox demo"}


def _is_group(cmd: Any) -> bool:
    """Typer bundles its own click: a group is whatever lists sub-commands."""
    return hasattr(cmd, "list_commands")


def _commands(cmd: Any, path: str) -> Iterator[tuple[str, Any]]:
    yield path, cmd
    if _is_group(cmd):
        ctx = click.Context(cmd, info_name=path)
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            assert sub is not None, f"{path} {name}"
            yield from _commands(sub, f"{path} {name}")


def test_the_walk_sees_the_whole_tree() -> None:
    paths = {path for path, _ in _commands(typer.main.get_command(app), "veilbox")}
    assert {
        "veilbox login",
        "veilbox agreement amend",
        "veilbox job result",
        "veilbox model score",
        "veilbox verify check-encrypted",
    } <= paths


def test_every_command_argument_and_option_has_help() -> None:
    missing = []
    for path, cmd in _commands(typer.main.get_command(app), "veilbox"):
        if not (cmd.help or "").strip():
            missing.append(path)
        for p in cmd.params:
            if p.name in ("help", "install_completion", "show_completion"):
                continue
            if not (getattr(p, "help", None) or "").strip():
                missing.append(f"{path} {p.opts[0] if p.opts else p.name}")
    assert not missing, "without help text: " + ", ".join(missing)


def test_every_command_takes_json() -> None:
    lacking = [
        path
        for path, cmd in _commands(typer.main.get_command(app), "veilbox")
        if not _is_group(cmd) and path not in NO_JSON and not any("--json" in p.opts for p in cmd.params)
    ]
    assert not lacking, "without --json: " + ", ".join(lacking)
