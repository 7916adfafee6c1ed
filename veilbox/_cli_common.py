"""What every `veilbox` sub-command shares: the gateway connection, the saved profile, output, ids and errors.

Conventions a command gets by using these helpers (new commands in any ``veilbox/cli*.py`` module should too):

- Connection: ``with client() as c``. URL and token come from ``--url``/``--token``, else ``VEILBOX_URL``/
  ``VEILBOX_TOKEN``, else the profile ``veilbox login`` wrote (``$XDG_CONFIG_HOME/veilbox/profiles/<name>.json``,
  default ``~/.config``; mode 0600 in a 0700 directory; a profile readable by others is refused; ``--profile`` or
  ``VEILBOX_PROFILE`` pick it, default ``default``).
- Output: ``emit(data, as_json, table)`` prints JSON when the command's ``--json`` or the global ``veilbox --json``
  is given, else the rich table (``fields_table(data)`` renders any object as field/value rows). Tables show full ids.
  Every command takes ``--json`` (``as_json: JsonOpt = False``).
- Ids: ``AgreementArg`` / ``JobArg`` accept a unique prefix (``agr_3f`` or ``3f``); an ambiguous prefix is a one-line
  error naming the candidates.
- Errors: raise ``CliError(cause, todo)`` or ``read_json(path)``; an ``ApiError``, an unreachable gateway or an
  unreadable file may simply escape. ``run(app)`` prints one line ``error: <cause> — <what to do>`` on stderr and
  exits with a stable code; ``--debug`` (or ``VEILBOX_DEBUG=1``) re-raises for the traceback.
  Exit codes: 0 ok; 1 the gateway refused or failed the request (its stable code is printed); 2 usage or bad input
  (missing or unreadable file, invalid JSON, no token, ambiguous id); 3 waiting ran out (a result not ready yet);
  4 the gateway is unreachable or did not answer; 5 an unexpected failure of the CLI itself; 130 interrupted.
- Help: every command, argument and option has help text (tests/unit/veilbox/test_cli_surface.py walks the tree),
  wrapped in ``_()`` so it follows VEILBOX_LANG (typer reads it at import, after the language is known). A command
  states it as ``help=_("…")`` on its decorator, not only in its docstring (which stays, for developers).
- Messages: every user-facing string goes through ``vocab.i18n._``.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.table import Table

from veilbox.client import ApiError, Client
from vocab.i18n import _

out = Console()
err = Console(stderr=True)

HomeOpt = Annotated[Path | None, typer.Option("--home", help=_("service home (default $VEILBOX_HOME or ./.veilbox)"))]
JsonOpt = Annotated[bool, typer.Option("--json", help=_("machine-readable JSON output"))]


def _use_profile(name: str | None) -> str | None:
    if name is not None:
        state.profile = name
    return name


ProfileOpt = Annotated[
    str | None,
    typer.Option(
        "--profile",
        help=_("profile name (default: the global --profile / VEILBOX_PROFILE, else `default`)"),
        callback=_use_profile,
    ),
]

DEFAULT_URL = "http://127.0.0.1:8000"
EXIT_API, EXIT_USAGE, EXIT_NOT_READY, EXIT_UNREACHABLE, EXIT_BUG, EXIT_INTERRUPTED = 1, 2, 3, 4, 5, 130


class _State:
    url: str | None = None
    token: str | None = None
    profile: str = "default"
    json: bool = False
    debug: bool = False


state = _State()


@dataclass
class CliError(Exception):
    """A failure the user can act on: printed as ``error: <cause> — <todo>``, exit ``code``."""

    cause: str
    todo: str = ""
    code: int = EXIT_USAGE


# -- profiles ------------------------------------------------------------------------------------------------
_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def profiles_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "veilbox" / "profiles"


def profile_path(name: str | None = None) -> Path:
    name = name or state.profile
    if not _PROFILE_NAME.match(name):
        raise CliError(
            _("invalid profile name %(name)r", name=name), _("use letters, digits, '.', '_' or '-' (at most 64)")
        )
    return profiles_dir() / f"{name}.json"


def load_profile(name: str | None = None) -> dict[str, Any] | None:
    """The saved profile, or None when there is none; refused when others can read it (it holds a token)."""
    path = profile_path(name)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CliError(
            _("profile %(path)s is readable by other users", path=str(path)),
            _("run `chmod 600 %(path)s`, or `veilbox logout` and log in again", path=str(path)),
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CliError(
            _("cannot read profile %(path)s: %(cause)s", path=str(path), cause=str(e)),
            _("run `veilbox logout` and log in again"),
        ) from None
    return data if isinstance(data, dict) else None


def save_profile(data: dict[str, Any], name: str | None = None) -> Path:
    """Write the profile with mode 0600 (created so, never widened) in a 0700 directory; atomic replace."""
    path = profile_path(name)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, json.dumps(data, indent=2).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def delete_profile(name: str | None = None) -> bool:
    path = profile_path(name)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def connection() -> tuple[str, str | None]:
    """(URL, token): flags and environment first, then the saved profile, then the default URL."""
    url, token = state.url, state.token
    if url is None or token is None:
        saved = load_profile() or {}
        url = url or saved.get("url")
        token = token or saved.get("token")
    return (url or DEFAULT_URL), token


def client() -> Client:
    url, token = connection()
    state.url = url
    if not token:
        raise CliError(_("no token"), _("run `veilbox login`, pass --token or set VEILBOX_TOKEN"))
    return Client(url, token)


# -- output --------------------------------------------------------------------------------------------------
def wants_json(as_json: bool = False) -> bool:
    return as_json or state.json


def emit(data: Any, as_json: bool, table: Table | None = None) -> None:
    if wants_json(as_json) or table is None:
        out.print_json(json.dumps(data, default=str))
    else:
        out.print(table)


def cell(value: Any) -> str:
    """A table cell: scalars as text, lists joined, objects as compact JSON (never truncated)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
        return ", ".join(str(v) for v in value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def fields_table(data: dict[str, Any], title: str | None = None) -> Table:
    """Any object as a two-column table, one row per field."""
    t = Table(_("field"), _("value"), title=title)
    for k, v in data.items():
        t.add_row(str(k), cell(v))
    return t


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file, or a one-line error naming the file and what to do."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CliError(_("%(path)s does not exist", path=str(path)), _("check the path")) from None
    except OSError as e:
        raise CliError(
            _("cannot read %(path)s: %(cause)s", path=str(path), cause=e.strerror or str(e)),
            _("check the path and its permissions"),
        ) from None
    except ValueError as e:
        raise CliError(
            _("%(path)s is not valid JSON: %(cause)s", path=str(path), cause=str(e)),
            _("fix the file (docs/api.md shows each document)"),
        ) from None
    if not isinstance(data, dict):
        raise CliError(
            _("%(path)s must hold a JSON object", path=str(path)), _("fix the file (docs/api.md shows each document)")
        )
    return data


# -- ids -----------------------------------------------------------------------------------------------------
def _resolver(
    prefix: str, lister: Callable[[Client], list[dict[str, Any]]], noun: str, list_cmd: str
) -> Callable[[str], str]:
    full = re.compile(rf"^{prefix}[0-9a-f]{{20}}$")

    def resolve(value: str) -> str:
        if full.match(value) or not value:
            return value
        with client() as c:
            ids = [str(item["id"]) for item in lister(c)]
        found = sorted({i for i in ids if i.startswith(value) or i.startswith(prefix + value)})
        if len(found) == 1:
            return found[0]
        if not found:
            raise CliError(
                _("no %(noun)s id starts with %(value)r", noun=noun, value=value),
                _("list them with `%(cmd)s`", cmd=list_cmd),
            )
        raise CliError(
            _(
                "%(value)r matches %(n)s %(noun)s ids: %(ids)s",
                value=value,
                n=len(found),
                noun=noun,
                ids=", ".join(found[:10]) + (" …" if len(found) > 10 else ""),
            ),
            _("give more of the id"),
        )

    return resolve


resolve_agreement = _resolver("agr_", lambda c: c.agreements(), "agreement", "veilbox agreement list")
resolve_job = _resolver("job_", lambda c: c.jobs(), "job", "veilbox job list")

AgreementArg = Annotated[
    str, typer.Argument(help=_("agreement id (agr_…; a unique prefix is enough)"), callback=resolve_agreement)
]
AgreementOpt = Annotated[
    str,
    typer.Option("--agreement", help=_("agreement id (agr_…; a unique prefix is enough)"), callback=resolve_agreement),
]
JobArg = Annotated[str, typer.Argument(help=_("job id (job_…; a unique prefix is enough)"), callback=resolve_job)]


# -- errors --------------------------------------------------------------------------------------------------
def _hint(code: str) -> str:
    """What to do about a gateway error code (vocab.errors)."""
    hints = {
        "UNAUTHENTICATED": _("log in again (`veilbox login`) or check --token / VEILBOX_TOKEN"),
        "NOT_FOUND_OR_FORBIDDEN": _("check the id or name (the `list` commands show what you may see)"),
        "INVALID_REQUEST": _("fix the input named above (docs/api.md describes each field)"),
        "ALREADY_EXISTS": _("pick another name or use the existing one"),
        "METHOD_NOT_ALLOWED": _("check that the CLI and the gateway are the same version"),
        "AGREEMENT_INACTIVE": _("check the agreement's state and validity (`veilbox agreement show`)"),
        "POLICY_DENIED": _("this role or agreement does not allow it; ask the data owner or the administrator"),
        "QUERY_REJECTED": _("rewrite the query (docs/mechanisms/dp_sql.md lists the rules)"),
        "BUDGET_EXHAUSTED": _("spend less ε or ask the owner to amend the agreement's budget"),
        "QUOTA_EXCEEDED": _("wait for the quota window to pass or ask the owner to raise it"),
        "APPROVAL_REQUIRED": _("wait for the owner's approval (`veilbox job list`)"),
        "CIPHERTEXT_INVALID": _("regenerate the context and ciphertexts with the bank SDK"),
        "UNAVAILABLE": _("retry in a moment; if it persists, ask the operator to check the gateway"),
        "INTERNAL": _("retry; if it persists, report it with the time (the gateway log has the cause)"),
    }
    return hints.get(code) or _("see docs/api.md, Errors")


def _say(cause: str, todo: str) -> None:
    line = f"error: {cause}" + (f" — {todo}" if todo else "")
    print(" ".join(line.split()), file=sys.stderr, flush=True)


def _api_cause(e: ApiError) -> str:
    cause = f"{e.code} ({e.status}): {e.message}"
    if e.details:
        details = json.dumps(e.details, ensure_ascii=False, default=str)
        cause += f" {details[:300]}{'…' if len(details) > 300 else ''}"
    return cause


def fail(e: BaseException) -> NoReturn:
    """Print ``e`` as one line and exit with its stable code (the traceback only with --debug)."""
    if state.debug or os.environ.get("VEILBOX_DEBUG", "") not in ("", "0"):
        traceback.print_exception(e)
    if isinstance(e, CliError):
        _say(e.cause, e.todo)
        sys.exit(e.code)
    if isinstance(e, ApiError):
        _say(_api_cause(e), _hint(e.code))
        sys.exit(EXIT_API)
    if isinstance(e, httpx.TimeoutException):
        _say(
            _("the gateway at %(url)s did not answer in time", url=state.url or DEFAULT_URL),
            _("retry, or check the gateway's load and logs"),
        )
        sys.exit(EXIT_UNREACHABLE)
    if isinstance(e, httpx.TransportError):
        _say(
            _("cannot reach the gateway at %(url)s (%(cause)s)", url=state.url or DEFAULT_URL, cause=str(e)),
            _("start it with `veilbox serve`, or check --url / VEILBOX_URL / `veilbox whoami`"),
        )
        sys.exit(EXIT_UNREACHABLE)
    if isinstance(e, FileNotFoundError):
        _say(_("%(path)s does not exist", path=str(e.filename)), _("check the path"))
        sys.exit(EXIT_USAGE)
    if isinstance(e, OSError) and e.filename is not None:
        _say(
            _("cannot use %(path)s: %(cause)s", path=str(e.filename), cause=e.strerror or str(e)),
            _("check the path and its permissions"),
        )
        sys.exit(EXIT_USAGE)
    if isinstance(e, json.JSONDecodeError):
        _say(_("invalid JSON: %(cause)s", cause=str(e)), _("fix the input"))
        sys.exit(EXIT_USAGE)
    if type(e).__name__ == "MasterKeyError":  # catalog.keyring: the home's master key is missing, unsafe or wrong
        _say(str(e), _('see docs/deploy.md, "Key handling"'))
        sys.exit(EXIT_USAGE)
    if isinstance(e, KeyboardInterrupt):
        _say(_("interrupted"), "")
        sys.exit(EXIT_INTERRUPTED)
    _say(
        _("unexpected failure: %(kind)s: %(cause)s", kind=type(e).__name__, cause=str(e)),
        _("rerun with --debug for the traceback and report it"),
    )
    sys.exit(EXIT_BUG)


def _usage(e: Any) -> NoReturn:
    """A click usage error (typer bundles its own click) as one line, or the help when no arguments were given."""
    ctx = getattr(e, "ctx", None)
    if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:
        print(ctx.get_help())
        sys.exit(e.exit_code)
    where = ctx.command_path if ctx is not None else "veilbox"
    _say(e.format_message(), _("see `%(cmd)s --help`", cmd=where))
    sys.exit(e.exit_code)


def run(app: typer.Typer, args: list[str] | None = None) -> NoReturn:
    """Run the CLI (``args`` default to ``sys.argv``) and exit; any failure is one line on stderr and a stable exit
    code (see the module docstring)."""
    try:
        rv = app(args=args, prog_name="veilbox", standalone_mode=False)
    except SystemExit:
        raise
    except BaseException as e:  # every failure becomes one line (the traceback only with --debug)
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):
            _usage(e)
        if type(e).__name__ == "Abort":
            _say(_("aborted"), "")
            sys.exit(EXIT_API)
        fail(e)
    sys.exit(rv if isinstance(rv, int) else 0)
