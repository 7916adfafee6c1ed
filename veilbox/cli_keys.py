"""`veilbox keys status|rotate`: the master key a home's keys are wrapped by (`gateway.masterkey`).

Both work on a local home (``--home``, default ``$VEILBOX_HOME``) and open it with its current master key (the
``VEILBOX_MASTER_KEY_FILE`` / ``VEILBOX_MASTER_KEY`` / ``VEILBOX_PKCS11_*`` settings, else the key file beside the
home). Neither prints a secret. Registered on ``veilbox keys`` by `veilbox.cli`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from veilbox import _cli_common as base
from vocab.i18n import _

keys_app = typer.Typer(help=_("The master key that wraps every data key and service secret (local home)."),
                       no_args_is_help=True)


def _open(home: Path | None) -> Any:
    from gateway.context import open_context
    from gateway.settings import Settings

    return open_context(Settings(home=home) if home is not None else Settings())


@keys_app.command("status", help=_("Show the master-key provider and how many keys it wraps (no secret is printed)."))
def status(home: base.HomeOpt = None, as_json: base.JsonOpt = False) -> None:
    """Show the master-key provider and how many keys it wraps (no secret is printed)."""
    from gateway.masterkey import status as key_status

    ctx = _open(home)
    try:
        data = key_status(ctx)
    finally:
        ctx.close()
    base.emit(data, as_json, base.fields_table(data))


@keys_app.command("rotate", help=_("Re-wrap every key under a new master key (no data is re-encrypted; the old key is "
                                   "no longer needed).\n"
           "\n"
           "Stop every gateway and worker of the home first; afterwards start them with the new master key set."))
def rotate(
    home: base.HomeOpt = None,
    to_file: Annotated[Path | None, typer.Option(
        "--to-file", help=_("a key file outside the home (created with mode 0600 when it does not exist)"))] = None,
    to_env: Annotated[bool, typer.Option(
        "--to-env", help=_("the base64 key in VEILBOX_NEW_MASTER_KEY (then run with VEILBOX_MASTER_KEY set to it)"))
    ] = False,
    to_pkcs11: Annotated[str | None, typer.Option(
        "--to-pkcs11", help=_("a PKCS#11 module; its token's AES key is generated when missing (PIN from "
        "VEILBOX_NEW_PKCS11_PIN, else VEILBOX_PKCS11_PIN)"))] = None,
    token_label: Annotated[str, typer.Option(help=_("with --to-pkcs11: the token's label"))] = "veilbox",  # noqa: S107
    key_label: Annotated[str, typer.Option(help=_("with --to-pkcs11: the AES key's label"))] = "veilbox-master",
    as_json: base.JsonOpt = False,
) -> None:
    """Re-wrap every key under a new master key (no data is re-encrypted; the old key is no longer needed).

    Stop every gateway and worker of the home first; afterwards start them with the new master key set."""
    from gateway.masterkey import new_provider
    from gateway.masterkey import rotate as rotate_keys

    if sum((to_file is not None, to_env, to_pkcs11 is not None)) != 1:
        raise base.CliError(_("name exactly one new master key"), _("use --to-file, --to-env or --to-pkcs11"))
    env_key = None
    if to_env:
        env_key = os.environ.get("VEILBOX_NEW_MASTER_KEY")
        if not env_key:
            raise base.CliError(_("VEILBOX_NEW_MASTER_KEY is not set"),
                                _("set it to the base64 of 32 random bytes (head -c 32 /dev/urandom | base64)"))
    pin = os.environ.get("VEILBOX_NEW_PKCS11_PIN") or os.environ.get("VEILBOX_PKCS11_PIN", "")
    ctx = _open(home)
    try:
        new = new_provider(ctx.settings.home, to_file=to_file, to_env=env_key, to_pkcs11=to_pkcs11,
                           token_label=token_label, pin=pin, key_label=key_label)
        data = rotate_keys(ctx, new)
    finally:
        ctx.close()
    if to_file is not None:
        data["next"] = _("set VEILBOX_MASTER_KEY_FILE=%(path)s for every process of this home, then start them",
                         path=str(to_file.resolve()))
    elif to_env:
        data["next"] = _("set VEILBOX_MASTER_KEY to the value of VEILBOX_NEW_MASTER_KEY for every process of this "
                         "home, then start them")
    else:
        data["next"] = _("set VEILBOX_PKCS11_MODULE, VEILBOX_PKCS11_TOKEN_LABEL, VEILBOX_PKCS11_KEY_LABEL and "
                         "VEILBOX_PKCS11_PIN for every process of this home, then start them")
    base.emit(data, as_json, base.fields_table(data))


def register(app: typer.Typer) -> None:
    """Add ``veilbox keys`` to the CLI."""
    app.add_typer(keys_app, name="keys")
