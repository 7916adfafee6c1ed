"""`veilbox login|logout|whoami`: a saved connection so commands stop needing ``VEILBOX_TOKEN=`` prefixes.

The profile is ``$XDG_CONFIG_HOME/veilbox/profiles/<name>.json`` (``~/.config`` without XDG_CONFIG_HOME), created
with mode 0600 in a 0700 directory and refused when others can read it; ``--profile NAME`` or ``VEILBOX_PROFILE``
pick one, default ``default``. ``--url``/``--token`` and ``VEILBOX_URL``/``VEILBOX_TOKEN`` still override it
(`veilbox._cli_common.connection`). ``login`` checks the token against the gateway before saving it.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated

import httpx
import typer

from veilbox import _cli_common as base
from vocab.i18n import _


def login(
    url: Annotated[
        str | None,
        typer.Option(
            "--url", help=_("gateway URL to save (default: the global --url / VEILBOX_URL, else http://127.0.0.1:8000)")
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help=_(
                "token to save (default: the global --token / VEILBOX_TOKEN, else read from stdin or a hidden prompt)"
            ),
        ),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check/--no-check", help=_("ask the gateway who the token belongs to before saving it"))
    ] = True,
    wait: Annotated[
        float,
        typer.Option(
            help=_("seconds to wait for a gateway that is still starting (e.g. right after `veilbox serve &`)")
        ),
    ] = 0.0,
    profile: base.ProfileOpt = None,
    as_json: base.JsonOpt = False,
) -> None:
    """Save a gateway URL and token in your profile (mode 0600); later commands use them."""
    url = url or base.state.url or base.DEFAULT_URL
    token = token or base.state.token
    if not token:
        token = typer.prompt(_("token"), hide_input=True) if sys.stdin.isatty() else sys.stdin.readline().strip()
    if not token:
        raise base.CliError(_("no token given"), _("pass --token, pipe it on stdin, or type it at the prompt"))
    record: dict[str, str] = {"url": url.rstrip("/"), "token": token}
    if check:
        base.state.url = record["url"]
        deadline = time.monotonic() + wait
        with base.Client(record["url"], token) as c:
            while True:
                try:
                    me = c.me()
                    break
                except httpx.TransportError:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.2)
        record |= {"name": me["name"], "role": me["role"]}
    path = base.save_profile(record)
    shown = {k: v for k, v in record.items() if k != "token"} | {"profile": base.state.profile, "path": str(path)}
    if base.wants_json(as_json):
        base.emit(shown, True)
    else:
        who = _(" as %(name)s (%(role)s)", name=record["name"], role=record["role"]) if "name" in record else ""
        base.out.print(
            _(
                "saved profile %(profile)s for %(url)s%(who)s in %(path)s",
                profile=base.state.profile,
                url=record["url"],
                who=who,
                path=str(path),
            )
        )


def logout(profile: base.ProfileOpt = None, as_json: base.JsonOpt = False) -> None:
    """Forget the saved profile (the token stays valid on the gateway; an admin can rotate it)."""
    removed = base.delete_profile()
    path = str(base.profile_path())
    if base.wants_json(as_json):
        base.emit({"profile": base.state.profile, "path": path, "removed": removed}, True)
    elif removed:
        base.out.print(_("removed profile %(profile)s (%(path)s)", profile=base.state.profile, path=path))
    else:
        base.out.print(_("no profile %(profile)s to remove", profile=base.state.profile))


def whoami(profile: base.ProfileOpt = None, as_json: base.JsonOpt = False) -> None:
    """Which gateway and principal the next command would use, and where that comes from."""
    url, _token = base.connection()
    with base.client() as c:
        me = c.me()
    source = "flags or environment" if base.state.token else f"profile {base.state.profile}"
    data = {"url": url, "name": me["name"], "role": me["role"], "credentials": source}
    base.emit(data, as_json, base.fields_table(data))


def register(app: typer.Typer) -> None:
    app.command("login", help=_("Save a gateway URL and token in your profile (mode 0600); later commands use them."))(
        login
    )
    app.command(
        "logout", help=_("Forget the saved profile (the token stays valid on the gateway; an admin can rotate it).")
    )(logout)
    app.command("whoami", help=_("Which gateway and principal the next command would use, and where that comes from."))(
        whoami
    )
