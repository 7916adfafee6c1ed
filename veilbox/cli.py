"""`veilbox`: the command line for every role. Talks to a running gateway over HTTP (`veilbox login` once, or
`--url`/`--token`, or VEILBOX_URL/VEILBOX_TOKEN); `init`, `serve`, `worker`, `datagen`, `demo` and
`audit verify --home` work locally. Add `--json` for machine output and `--debug` for tracebacks.

Conventions shared by every command (connection, profile, --json, id prefixes, one-line errors, exit codes, help
text): veilbox/_cli_common.py."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from veilbox import (
    cli_alerts,
    cli_audit,
    cli_authority,
    cli_certificates,
    cli_complaints,
    cli_consent,
    cli_disposal,
    cli_he,
    cli_keys,
    cli_policy,
    cli_profile,
    cli_psi,
    cli_report,
    cli_revenue,
    cli_work,
)
from veilbox._cli_common import (
    EXIT_NOT_READY,
    AgreementOpt,
    CliError,
    HomeOpt,
    JsonOpt,
    client,
    emit,
    err,
    fields_table,
    out,
    read_json,
    resolve_agreement,
    run,
    state,
    wants_json,
)
from vocab.i18n import _

app = typer.Typer(help=_(
    "`veilbox`: the command line for every role. Talks to a running gateway over HTTP (`veilbox login` once, or\n"
    "`--url`/`--token`, or VEILBOX_URL/VEILBOX_TOKEN); `init`, `serve`, `worker`, `datagen`, `demo` and\n"
    "`audit verify --home` work locally. Add `--json` for machine output and `--debug` for tracebacks.\n"
    "\n"
    "Conventions shared by every command (connection, profile, --json, id prefixes, one-line errors, exit codes, help\n"
    "text): veilbox/_cli_common.py."
), no_args_is_help=True, pretty_exceptions_enable=False)
principal_app = typer.Typer(help=_("Principals and their roles (admin)."), no_args_is_help=True)
dataset_app = typer.Typer(help=_("Datasets in the catalog (owners register; everyone reads schemas and mocks)."),
                          no_args_is_help=True)
audit_app = typer.Typer(help=_("The hash-chained audit log (regulators verify and export)."), no_args_is_help=True)
app.add_typer(principal_app, name="principal")
app.add_typer(dataset_app, name="dataset")
app.add_typer(audit_app, name="audit")
verify_app = typer.Typer(help=_("Verification products (核验): owners define yes/no questions, banks ask them."),
                         no_args_is_help=True)
app.add_typer(verify_app, name="verify")

@app.callback()
def _global(
    url: Annotated[str | None, typer.Option(
        envvar="VEILBOX_URL", help=_("gateway URL (default: the profile's, else http://127.0.0.1:8000)"))] = None,
    token: Annotated[str | None, typer.Option(
        envvar="VEILBOX_TOKEN", help=_("bearer token (default: the profile's, see `veilbox login`)"))] = None,
    profile: Annotated[str, typer.Option(
        envvar="VEILBOX_PROFILE", help=_("saved profile to use (`veilbox login --profile NAME`)"))] = "default",
    as_json: Annotated[bool, typer.Option("--json", help=_("machine-readable JSON output for any command"))] = False,
    debug: Annotated[bool, typer.Option(
        "--debug", envvar="VEILBOX_DEBUG", help=_("show the traceback of a failure"))] = False,
) -> None:
    state.url, state.token, state.profile, state.json, state.debug = url, token, profile, as_json, debug


def _settings(home: Path | None, **kw: Any) -> Any:
    from gateway.settings import Settings

    if home is not None:
        kw["home"] = home
    return Settings(**kw)


# -- local commands ----------------------------------------------------------------------------------------
@app.command(help=_("Create a service home: directories, keys, metadata schema and the admin principal."))
def init(home: HomeOpt = None, as_json: JsonOpt = False,
         suite: Annotated[str | None, typer.Option(
             help=_("cryptographic suite, fixed for the home: intl (SHA-256, Ed25519, AES-256-GCM) or sm "
             "(SM3, SM2, SM4-GCM) (default $VEILBOX_SUITE or intl)"))] = None,
         hash_alg: Annotated[str | None, typer.Option(
             help=_("deprecated alias of --suite: sm3 means --suite sm, sha256 --suite intl"))] = None,
         token_only: Annotated[bool, typer.Option(
             "--token-only", help=_("print only the admin token (for `TOKEN=$(veilbox init … "
                                    "--token-only)`)"))] = False,
         filing: Annotated[bool, typer.Option(
             "--filing/--no-filing", help=_("agreements are reviewed and filed (备案) by the data authority before "
             "they can be active (docs/agreements.md)"))] = False,
         consent_registry: Annotated[bool, typer.Option(
             "--consent-registry/--no-consent-registry", help=_("checks and membership tests on personal data name "
             "registered consents (同意登记, docs/consent.md); off: a free-text consent reference"))] = True,
         ) -> None:
    """Create a service home: directories, keys, metadata schema and the admin principal."""
    from pydantic import ValidationError

    from gateway.context import AlreadyInitialised, init_home

    try:
        s = _settings(home, **_given(suite=suite, hash_alg=hash_alg))
    except ValidationError as e:  # an unknown suite, or --hash-alg contradicting --suite
        raise CliError(str(e.errors()[0]["msg"]), _("use --suite intl or --suite sm"), code=2) from None
    try:
        token = init_home(s)
    except AlreadyInitialised as e:
        raise CliError(str(e), _("pick another --home, or use the existing one"), code=1) from None
    if filing or consent_registry:
        from catalog.store import make_engine
        from gateway.services.agreements import set_filing
        from gateway.services.consent import set_enforced

        engine = make_engine(s.db_url)
        try:
            if filing:
                set_filing(engine, True)
            if consent_registry:
                set_enforced(engine, True)
        finally:
            engine.dispose()
    from gateway.masterkey import provider

    # where the master key is (path or token and a fingerprint: never the key); it never lies in the home
    master = provider(s.home, s)
    if hasattr(master, "use_suite"):
        master.use_suite(s.suite)  # its fingerprint is the home suite's HMAC
    data = {"home": str(s.home.resolve()), "admin_token": token, "suite": s.suite,
            "master_key": master.describe()}
    if token_only:
        print(token)
    elif wants_json(as_json):
        out.print_json(json.dumps(data))
    else:
        out.print(_("Initialised %(home)s\nadmin token (shown once): %(token)s", home=f"[bold]{data['home']}[/]",
                    token=f"[bold]{token}[/]"))
        out.print(_("master key (kept outside the home; back it up apart from it): %(where)s",
                    where=data["master_key"]))


def _given(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None}


@app.command(help=_("Run the HTTP gateway (API under /v1, OpenAPI at /openapi.json, docs at /docs): one process, or "
                    "--workers N\n"
           "processes sharing the port and the store. Other settings come from VEILBOX_* (docs/deploy.md)."))
def serve(
    home: HomeOpt = None,
    host: Annotated[str | None, typer.Option(help=_("address to listen on (default $VEILBOX_HOST or "
                                                    "127.0.0.1)"))] = None,
    port: Annotated[int | None, typer.Option(help=_("port (default $VEILBOX_PORT or 8000)"))] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, max=64,
        help=_("HTTP worker processes over the one store (default $VEILBOX_HTTP_WORKERS or 1)"))] = None,
    embedded_worker: Annotated[bool | None, typer.Option(
        "--embedded-worker/--no-embedded-worker",
        help=_("run a job worker inside each HTTP process (default $VEILBOX_WORKER or on, whatever --workers; "
        "leases keep them apart). Turn it off when `veilbox worker` processes run the jobs"))] = None,
) -> None:
    """Run the HTTP gateway (API under /v1, OpenAPI at /openapi.json, docs at /docs): one process, or --workers N
    processes sharing the port and the store. Other settings come from VEILBOX_* (docs/deploy.md)."""
    from gateway.server import run

    run(_settings(home, **_given(host=host, port=port, http_workers=workers, worker=embedded_worker)))


@app.command(help=_("Run job workers without HTTP: K processes claiming approved jobs from the store's queue, each "
                    "with its own\n"
           "id, lease heartbeats and sweeps. SIGTERM/SIGINT stops them after their current job (at most\n"
           "$VEILBOX_WORKER_STOP_GRACE_S, 30 s; a second signal at once), giving up a job still running (failed and\n"
           "refunded). Approvals are seen within $VEILBOX_JOB_POLL_S (1 s). Logs go to stderr."))
def worker(
    home: HomeOpt = None,
    count: Annotated[int | None, typer.Option(
        "--count", min=1, max=64, help=_("job worker processes to run (default $VEILBOX_JOB_WORKERS or 1)"))] = None,
) -> None:
    """Run job workers without HTTP: K processes claiming approved jobs from the store's queue, each with its own
    id, lease heartbeats and sweeps. SIGTERM/SIGINT stops them after their current job (at most
    $VEILBOX_WORKER_STOP_GRACE_S, 30 s; a second signal at once), giving up a job still running (failed and
    refunded). Approvals are seen within $VEILBOX_JOB_POLL_S (1 s). Logs go to stderr."""
    from gateway.worker import run_workers

    raise typer.Exit(run_workers(_settings(home, **_given(job_workers=count))))


@app.command(help=_("Write the synthetic city data family (tax_income, enterprise_registry) with declaration files."))
def datagen(
    out_dir: Annotated[Path, typer.Option("--out", help=_("output directory"))] = Path("veilbox-data"),
    rows: Annotated[int, typer.Option(help=_("people in tax_income"))] = 100_000,
    seed: Annotated[int, typer.Option(help=_("seed of the synthetic generator (same seed, same data)"))] = 20261122,
    as_json: JsonOpt = False,
) -> None:
    """Write the synthetic city data family (tax_income, enterprise_registry) with declaration files."""
    from tqdm import tqdm

    from catalog.datagen import generate

    with tqdm(total=rows + max(10, rows // 20), unit="rows", unit_scale=True, file=sys.stderr) as bar:
        g = generate(out_dir, rows=rows, seed=seed, progress=bar.update)
    out.print_json(json.dumps({"tax_income": str(g.tax_income), "enterprise_registry": str(g.enterprise_registry),
                               "specs": [str(g.tax_income_spec), str(g.enterprise_registry_spec)],
                               "rows": g.rows, "enterprises": g.enterprises}))


@app.command(help=_("Run the whole story end to end on synthetic data, over real HTTP, and print what happened."))
def demo(home: HomeOpt = None, rows: Annotated[int, typer.Option(help=_("people to generate"))] = 50_000,
         suite: Annotated[str, typer.Option(
             help=_("cryptographic suite of the demo's home: intl or sm (SM3, SM2, SM4-GCM)"))] = "intl") -> None:
    """Run the whole story end to end on synthetic data, over real HTTP, and print what happened."""
    from veilbox.demo import run_demo

    if suite not in ("intl", "sm"):
        raise CliError(_("unknown suite %(suite)s", suite=suite), _("use --suite intl or --suite sm"), code=2)
    run_demo(home, rows, suite)


# -- principals -----------------------------------------------------------------------------------------
@principal_app.command("add", help=_("Create a principal (admin); prints its token once."))
def principal_add(name: Annotated[str, typer.Argument(help=_("the principal's unique name (e.g. city-tax)"))],
                  role: Annotated[str, typer.Option(help=_("admin|owner|operator|bank|regulator|authority|reviewer"))],
                  as_json: JsonOpt = False,
                  token_only: Annotated[bool, typer.Option(
                      "--token-only", help=_("print only the token (for `TOKEN=$(veilbox principal add …)`)"))] = False,
                  reviewer_kind: Annotated[str | None, typer.Option(
                      help=_("a reviewer's kind: expert_committee (专家委员会) | cyberspace (网信)"))] = None,
                  ) -> None:
    """Create a principal (admin); prints its token once."""
    with client() as c:
        p = c.create_principal(name, role, reviewer_kind)
    if token_only:
        print(p["token"])
    elif wants_json(as_json):
        emit(p, True)
    else:
        out.print(_("%(name)s (%(role)s) token:", name=p["name"], role=p["role"]), f"[bold]{p['token']}[/]")


@principal_app.command("list", help=_("Every principal with its role (admin)."))
def principal_list(as_json: JsonOpt = False) -> None:
    """Every principal with its role (admin)."""
    with client() as c:
        ps = c.principals()
    t = Table("id", "name", "role")
    for p in ps:
        t.add_row(p["id"], p["name"], p["role"])
    emit(ps, as_json, t)


@principal_app.command("me", help=_("Who the token belongs to (any role)."))
def principal_me(as_json: JsonOpt = False) -> None:
    """Who the token belongs to (any role)."""
    with client() as c:
        me = c.me()
    emit(me, as_json, fields_table(dict(me)))


PrincipalArg = Annotated[str, typer.Argument(help=_("the principal's name"))]


@principal_app.command("disable", help=_("Disable a principal (admin): its next call is refused and its console "
                                         "sessions end."))
def principal_disable(name: PrincipalArg, as_json: JsonOpt = False) -> None:
    """Disable a principal (admin): its next call is refused and its console sessions end."""
    with client() as c:
        p = c.disable_principal(name)
    emit(p, True) if as_json else out.print(_("%(name)s is disabled", name=p["name"]))


@principal_app.command("enable", help=_("Enable a disabled principal again (admin)."))
def principal_enable(name: PrincipalArg, as_json: JsonOpt = False) -> None:
    """Enable a disabled principal again (admin)."""
    with client() as c:
        p = c.enable_principal(name)
    emit(p, True) if as_json else out.print(_("%(name)s is enabled", name=p["name"]))


@principal_app.command("rotate", help=_("Give a principal a new token (admin); prints it once. The old token stops "
                                        "working at once."))
def principal_rotate(name: PrincipalArg, as_json: JsonOpt = False) -> None:
    """Give a principal a new token (admin); prints it once. The old token stops working at once."""
    with client() as c:
        p = c.rotate_principal(name)
    if as_json:
        emit(p, True)
    else:
        out.print(_("%(name)s new token:", name=p["name"]), f"[bold]{p['token']}[/]")


@principal_app.command("expire", help=_("Set when a principal's token stops working (admin)."))
def principal_expire(name: PrincipalArg, at: Annotated[str, typer.Option(
        "--at", help=_("ISO-8601 time the token stops working (UTC without an offset); 'now' ends access now"))],
                     as_json: JsonOpt = False) -> None:
    """Set when a principal's token stops working (admin)."""
    import datetime as dt

    when = dt.datetime.now(dt.UTC).isoformat() if at == "now" else at
    with client() as c:
        p = c.expire_principal(name, when)
    emit(p, True) if as_json else out.print(_("%(name)s expires at %(at)s", name=p["name"], at=p["expires_at"]))


# -- datasets -------------------------------------------------------------------------------------------
@dataset_app.command("register", help=_("Register a dataset (owner): the server copies the source into the sandbox and "
                                        "fingerprints it."))
def dataset_register(
    spec_file: Annotated[Path, typer.Argument(help=_("declaration JSON (as written by `veilbox datagen`)"))],
    source: Annotated[str | None, typer.Option(help=_("override the source path (server side)"))] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a dataset (owner): the server copies the source into the sandbox and fingerprints it."""
    spec = read_json(spec_file)
    if source:
        spec["source"] = source
    with client() as c, out.status("registering (validate, clamp, copy, fingerprint)…"):
        ds = c.register_dataset(spec)
    if as_json:
        emit(ds, True)
        return
    out.print(_("registered %(name)s rows=%(rows)s fingerprint=%(fp)s", name=f"[bold]{ds['name']}[/]", rows=ds["rows"],
                fp=ds["fingerprint"]))
    ing = ds.get("ingest", {})
    if ing.get("clamped"):
        out.print(_("clamped to declared bounds: %(n)s", n=ing["clamped"]))
    if ing.get("out_of_domain"):
        out.print(_("values outside declared domains: %(n)s", n=ing["out_of_domain"]))


@dataset_app.command("list", help=_("The catalog: every registered dataset with its owner, grade and fingerprint."))
def dataset_list(as_json: JsonOpt = False) -> None:
    """The catalog: every registered dataset with its owner, grade and fingerprint."""
    with client() as c:
        dss = c.datasets()
    t = Table("name", "owner", "grade", "personal", "columns", "fingerprint")
    for d in dss:
        t.add_row(d["name"], d["owner"], d["grade"], str(d["personal"]), str(len(d["columns"])), d["fingerprint"])
    emit(dss, as_json, t)


@dataset_app.command("show", help=_("One dataset's declaration, columns, bounds and fingerprint."))
def dataset_show(name: Annotated[str, typer.Argument(help=_("dataset name"))], as_json: JsonOpt = False) -> None:
    """One dataset's declaration, columns, bounds and fingerprint."""
    with client() as c:
        ds = c.dataset(name)
    emit(ds, as_json, fields_table(ds, title=name))


@dataset_app.command("withdraw", help=_("Withdraw a dataset (its owner or an admin): agreements suspended, open jobs "
                                        "cancelled and refunded; its copy\n"
           "is destroyed after the grace period (VEILBOX_WITHDRAW_GRACE_S), the record is kept."))
def dataset_withdraw(
    name: Annotated[str, typer.Argument(help=_("dataset name"))],
    reason: Annotated[str, typer.Option("--reason", help=_("why it is withdrawn (kept in the audit log)"))],
    as_json: JsonOpt = False,
) -> None:
    """Withdraw a dataset (its owner or an admin): agreements suspended, open jobs cancelled and refunded; its copy
    is destroyed after the grace period (VEILBOX_WITHDRAW_GRACE_S), the record is kept."""
    with client() as c:
        w = c.withdraw_dataset(name, reason)
    emit(w, as_json, fields_table(w, title=name))


@dataset_app.command("dispose-due", help=_("Run the disposal duty now on a local home: every withdrawn dataset past "
                                           "its grace period has its data key\n"
           "destroyed and its sealed copy deleted (a signed dataset.dispose audit entry each)."))
def dataset_dispose_due(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Run the disposal duty now on a local home: every withdrawn dataset past its grace period has its data key
    destroyed and its sealed copy deleted (a signed dataset.dispose audit entry each)."""
    from gateway.context import open_context
    from gateway.services.datasets import dispose_due
    from gateway.settings import Settings

    ctx = open_context(Settings(home=home) if home is not None else Settings())
    try:
        done = dispose_due(ctx)
    finally:
        ctx.close()
    data = {"disposed": done}
    emit(data, as_json, fields_table(data))


@dataset_app.command("mock", help=_("Synthetic rows from the declaration (never from the data)."))
def dataset_mock(name: Annotated[str, typer.Argument(help=_("dataset name"))],
                 rows: Annotated[int, typer.Option(help=_("rows to draw"))] = 10,
                 seed: Annotated[int, typer.Option(help=_("seed (same seed, same rows)"))] = 0,
                 as_json: JsonOpt = False) -> None:
    """Synthetic rows from the declaration (never from the data)."""
    with client() as c:
        m = c.mock(name, rows, seed)
    t = Table(*m["columns"], title=f"{name} (mock, seed {seed})")
    for r in m["rows"]:
        t.add_row(*[str(v) for v in r])
    emit(m, as_json, t)


# -- audit ------------------------------------------------------------------------------------------------
@audit_app.command("list", help=_("Audit entries from --since on (regulators see all; others their own)."))
def audit_list(since: Annotated[int, typer.Option(help=_("first seq to show"))] = 0,
               limit: Annotated[int, typer.Option(help=_("entries to show"))] = 50, as_json: JsonOpt = False) -> None:
    """Audit entries from --since on (regulators see all; others their own)."""
    with client() as c:
        page = c.audit(since, limit)
    t = Table("seq", "ts", "actor", "action", "agreement", "dataset", "decision", "code", "ε")
    for e in page["entries"]:
        t.add_row(str(e["seq"]), e["ts"][:19], e["actor"], e["action"], e["agreement_id"] or "",
                  e["dataset"] or "", e["decision"], e["code"] or "", e["epsilon"] or "")
    emit(page, as_json, t)


@audit_app.command("verify", help=_("Check the hash chain and signed checkpoints; exit 1 and name the first bad seq on "
                                    "failure."))
def audit_verify(home: Annotated[Path | None, typer.Option(
        "--home", help=_("verify a local home offline instead of asking the gateway"))] = None,
        anchors: Annotated[Path | None, typer.Option(
            "--anchors", help=_("also prove the chain extends every signed head anchored in this file (存证)"))] = None,
        public_key: Annotated[Path | None, typer.Option(
            "--public-key", help=_("with --anchors: the service's PEM public key to check the anchors with"))] = None,
        as_json: JsonOpt = False,
) -> None:
    """Check the hash chain and signed checkpoints; exit 1 and name the first bad seq on failure."""
    if anchors is not None:
        cli_audit.verify_anchors(home, anchors, public_key)
        return
    if home is not None:
        from gateway.context import open_context

        ctx = open_context(_settings(home))
        try:
            report: dict[str, Any] = dict(ctx.audit.verify().as_dict())
        finally:
            ctx.close()
    else:
        with client() as c:
            report = dict(c.audit_verify())
    out.print_json(json.dumps(report))
    if not report["ok"]:
        raise typer.Exit(1)


@audit_app.command("export", help=_("Every audit entry you may see as one Parquet file (regulator)."))
def audit_export(out_file: Annotated[Path, typer.Option("--out", help=_("Parquet file to write"))]
                 = Path("veilbox-audit.parquet"), as_json: JsonOpt = False) -> None:
    """Every audit entry you may see as one Parquet file (regulator)."""
    with client() as c:
        out_file.write_bytes(c.audit_export())
    emit({"wrote": str(out_file)}, True) if wants_json(as_json) else out.print(_("wrote %(path)s", path=str(out_file)))


@audit_app.command("lineage", help=_("Where a released output came from: job, agreement, dataset fingerprints, model, "
                                     "audit entries (regulator)."))
def audit_lineage(key: Annotated[str, typer.Argument(help=_("an output digest (sha256:…) or a job id"))],
                  as_json: JsonOpt = False) -> None:
    """Where a released output came from: job, agreement, dataset fingerprints, model, audit entries (regulator)."""
    with client() as c:
        tr = c.lineage(key)
    t = Table("step", "what")
    t.add_row("output", f"{tr['output_digest']} (by {tr['produced_by']})")
    if tr["job"]:
        j = tr["job"]
        t.add_row("job", f"{j['id']} {j['kind']} {j['state']}, by {j['created_by']}, approved by {j['approved_by']}")
    if tr["model"]:
        t.add_row("model", f"{tr['model']['id']} certificate {tr['model']['certificate_id']}")
    if tr["agreement"]:
        a = tr["agreement"]
        t.add_row("agreement", f"{a['id']} {a['owner']} → {a['grantee']} ({a['state']}, v{a['version']})")
    for d in tr["datasets"]:
        t.add_row("dataset", f"{d['name']} {d['fingerprint_bound']}" + ("" if d["unchanged"] else " (changed since)"))
    t.add_row("entries", ", ".join(str(e["seq"]) for e in tr["entries"]))
    emit(tr, as_json, t)


@audit_app.command("report", help=_("The monthly report: counts per agreement, dataset and product, ε debited, chain "
                                    "status (regulator)."))
def audit_report(
    month: Annotated[str, typer.Option(help=_("YYYY-MM (UTC)"))],
    fmt: Annotated[str, typer.Option("--format", help=_("json | pdf | parquet (the month's entries)"))] = "json",
    out_file: Annotated[Path | None, typer.Option("--out", help=_("write the PDF or Parquet here"))] = None,
    as_json: JsonOpt = False,
) -> None:
    """The monthly report: counts per agreement, dataset and product, ε debited, chain status (regulator)."""
    with client() as c:
        data = c.audit_report(month, fmt)
    if fmt == "json":
        emit(data, True)
        return
    target = out_file or Path(f"veilbox-{'report' if fmt == 'pdf' else 'audit'}-{month}.{fmt}")
    target.write_bytes(data)
    emit({"wrote": str(target)}, True) if wants_json(as_json) else out.print(_("wrote %(path)s", path=str(target)))


# -- verification ---------------------------------------------------------------------------------------
def _param(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise typer.BadParameter(_("expected NAME=VALUE, got %(text)r", text=text))
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return name, value


@verify_app.command("define", help=_("Define a verification product over one of your datasets (owner); the predicate "
                                     "is vetted like SQL."))
def verify_define(spec_file: Annotated[Path, typer.Argument(help=_("product JSON as in docs/api.md (name, dataset, "
                                                                  "subject_column, predicate, params)"))],
                  as_json: JsonOpt = False) -> None:
    """Define a verification product over one of your datasets (owner); the predicate is vetted like SQL."""
    spec = read_json(spec_file)
    with client() as c:
        emit(c.define_verification(spec), True)


@verify_app.command("list", help=_("The verification products you may ask or own."))
def verify_list(as_json: JsonOpt = False) -> None:
    """The verification products you may ask or own."""
    with client() as c:
        items = c.verifications()
    t = Table("name", "dataset", "subject", "predicate", "params", "encrypted form")
    for p in items:
        form = p.get("encrypted_form")
        t.add_row(p["name"], p["dataset"], p["subject_column"], p["predicate"],
                  ", ".join(f"{k}: {v}" for k, v in p["params"].items()),
                  f"{form['column']} {form['op']} :{form['param']}" if form else "-")
    emit(items, as_json, t)


@verify_app.command("check", help=_("Ask a product's question about one subject (bank): prints the answer and the "
                                    "signed receipt."))
def verify_check(
    name: Annotated[str, typer.Argument(help=_("product name"))],
    agreement: AgreementOpt,
    subject: Annotated[str, typer.Option(help=_("the subject's identifier"))],
    consent: Annotated[str, typer.Option(help=_("reference to the subject's consent"))],
    param: Annotated[list[str] | None, typer.Option(help=_("NAME=VALUE (JSON value), repeatable"))] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask a product's question about one subject (bank): prints the answer and the signed receipt."""
    params = dict(_param(p) for p in (param or []))
    with client() as c:
        emit(c.check(name, agreement, subject, params, consent_ref=consent), True)


# -- secure aggregation and federated training ---------------------------------------------------------------------
secagg_app = typer.Typer(help=_("Secure aggregation: an operator opens a round, holders join; only the sum leaves."),
                         no_args_is_help=True)
federated_app = typer.Typer(help=_("Federated DP training over secure aggregation (holders keep their rows)."),
                            no_args_is_help=True)
app.add_typer(secagg_app, name="secagg")
app.add_typer(federated_app, name="federated")
RoundOpt = Annotated[str, typer.Option("--round", help=_("round id (sa-…)"))]


@secagg_app.command("open", help=_("Open a round (operator); prints its id and public config."))
def secagg_open(
    agreement: Annotated[str, typer.Option(help=_("agreement id (agr_…; a unique prefix is enough) with job kind "
                                                  "train"),
                                           callback=resolve_agreement)],
    participant: Annotated[list[str], typer.Option(help=_("participant principal name, repeatable (order matters; at "
                                                        "least 3 parties to the agreement, never yourself)"))],
    threshold: Annotated[int, typer.Option(help=_("t: a strict majority of the participants, at least 3"))],
    length: Annotated[int, typer.Option(help=_("words per input vector"))],
    modulus_bits: Annotated[int, typer.Option(help=_("bits of the sum's modulus (words are mod 2^bits)"))] = 32,
    stage_timeout: Annotated[float, typer.Option(help=_("seconds before a stage closes on its own"))] = 300.0,
    as_json: JsonOpt = False,
) -> None:
    """Open a round (operator); prints its id and public config."""
    with client() as c:
        emit(c.secagg_open(agreement, participant, threshold, length, modulus_bits=modulus_bits,
                           stage_timeout_s=stage_timeout), True)


@secagg_app.command("list", help=_("The rounds you opened or take part in (holders: `--waiting` shows the rounds to "
                                   "join)."))
def secagg_list(
    waiting: Annotated[bool, typer.Option("--waiting", help=_("only rounds whose current stage waits for "
                                                              "you"))] = False,
    wait: Annotated[float, typer.Option(help=_("with --waiting: seconds to wait for one (≤ 30)"))] = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """The rounds you opened or take part in (holders: `--waiting` shows the rounds to join)."""
    with client() as c:
        emit(c.secagg_rounds(waiting_for_me=waiting, wait=wait), True)


@secagg_app.command("status", help=_("A round's public config, stage, deadline, survivors and task (the opener also "
                                     "sees who is pending)."))
def secagg_status(round_id: RoundOpt, as_json: JsonOpt = False) -> None:
    """A round's public config, stage, deadline, survivors and task (the opener also sees who is pending)."""
    with client() as c:
        emit(c.secagg_round(round_id), True)


@secagg_app.command("close", help=_("End the current stage now (the round's opener)."))
def secagg_close(round_id: RoundOpt, as_json: JsonOpt = False) -> None:
    """End the current stage now (the round's opener)."""
    with client() as c:
        emit(c.secagg_close(round_id), True)


@secagg_app.command("join", help=_("Take part in a round as a holder: your vector leaves only masked."))
def secagg_join(
    round_id: RoundOpt,
    vector_file: Annotated[Path | None, typer.Option(help=_(".npy vector: integer words, or floats with "
                                                            "--clip"))] = None,
    parquet: Annotated[Path | None, typer.Option(help=_("Parquet file: contribute the sums of --column"))] = None,
    column: Annotated[list[str] | None, typer.Option(help=_("column to sum (with --parquet), repeatable"))] = None,
    clip: Annotated[float | None, typer.Option(help=_("fixed-point bound for float inputs"))] = None,
    timeout: Annotated[float, typer.Option(help=_("give up after this many seconds"))] = 3600.0,
    as_json: JsonOpt = False,
) -> None:
    """Take part in a round as a holder: your vector leaves only masked."""
    from veilbox.secagg_client import join_round, round_config, vector_from_npy, vector_from_parquet

    if (vector_file is None) == (parquet is None):
        raise typer.BadParameter(_("give exactly one of --vector-file or --parquet"))
    with client() as c:
        config = round_config(c.secagg_round(round_id))
        if vector_file is not None:
            vector = vector_from_npy(vector_file, config, clip)
        else:
            if clip is None or not column:
                raise typer.BadParameter(_("--parquet needs --column (repeatable) and --clip"))
            assert parquet is not None
            vector = vector_from_parquet(parquet, column, config, clip)
        outcome = join_round(c, round_id, vector, config=config, timeout_s=timeout)
    emit({"round_id": outcome.round_id, "name": outcome.name, "sent": list(outcome.sent),
          "survived": outcome.survived}, True)


@secagg_app.command("result", help=_("The sum of the survivors' inputs (the round's opener)."))
def secagg_result(
    round_id: RoundOpt,
    wait: Annotated[float, typer.Option(help=_("seconds to wait for the round to finish (≤ 30)"))] = 25.0,
    clip: Annotated[float | None, typer.Option(help=_("decode a fixed-point sum with this bound"))] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help=_("write the sum to this .npy file"))] = None,
    as_json: JsonOpt = False,
) -> None:
    """The sum of the survivors' inputs (the round's opener)."""
    import numpy as np

    from mpc.secagg import FixedPoint
    from veilbox.secagg_client import decode_sum

    with client() as c:
        result = c.secagg_result(round_id, wait=wait)
        if not result["ready"]:
            emit(result, True)
            raise typer.Exit(EXIT_NOT_READY)
        total = decode_sum(result)
        values: Any = total
        if clip is not None:
            n = len(c.secagg_round(round_id)["config"]["participants"])
            values = FixedPoint(clip, n, result["modulus_bits"]).decode_sum(total)
    if out_file is not None:
        np.save(out_file, values)
    emit({k: v for k, v in result.items() if k != "sum"} | {"values": [float(v) for v in values[:20]],
                                                             "values_shown": min(20, len(values))}, True)


@federated_app.command("train", help=_("Coordinate a federated DP training (operator): the holders run `veilbox "
                                       "federated join`."))
def federated_train(
    agreement: Annotated[str, typer.Option(help=_("agreement id (agr_…) with job kind train"))],
    holder: Annotated[list[str], typer.Option(help=_("holder principal name, repeatable (at least 3; each named in "
                                                   "the agreement's holders)"))],
    declaration: Annotated[Path, typer.Option(help=_("the dataset declaration (.spec.json) the holders share"))],
    feature: Annotated[list[str], typer.Option(help=_("feature column, repeatable"))],
    label: Annotated[str, typer.Option(help=_("label column (two-value domain)"))],
    threshold: Annotated[int, typer.Option(help=_("t: rounds release only with at least t (≥ 3) survivors"))],
    rounds: Annotated[int, typer.Option(help=_("Newton rounds (one secure-aggregation round each)"))] = 4,
    epsilon: Annotated[float, typer.Option(help=_("total ε over all rounds"))] = 2.0,
    delta: Annotated[float, typer.Option(help=_("total δ"))] = 1e-5,
    max_rows_per_holder: Annotated[int, typer.Option(help=_("rows one holder may contribute (bounds its influence)"))
                                   ] = 100_000,
    stage_timeout: Annotated[float, typer.Option(help=_("seconds before a stage closes without the silent"))] = 120.0,
    out_file: Annotated[Path | None, typer.Option("--out", help=_("write the model card (JSON) here"))] = None,
    as_json: JsonOpt = False,
) -> None:
    """Coordinate a federated DP training (operator): the holders run `veilbox federated join`."""
    from veilbox.federated import Coordinator, FederatedPlan, encoding_from_declaration, home_hash_alg

    encoding = encoding_from_declaration(read_json(declaration), feature, label)
    plan = FederatedPlan.calibrate(encoding, holder, threshold, rounds, epsilon, delta,
                                   max_rows_per_holder=max_rows_per_holder)
    with client() as c:
        err.print(f"plan {plan.plan_id} ({plan.digest(home_hash_alg(c))}): σ_local={plan.sigma_local:,.1f} steps of "
                  f"γ={plan.gamma:.3g}; vector length {plan.vector_length}")
        model = Coordinator(c, agreement, plan, stage_timeout_s=stage_timeout).train(
            lambda r, _result: err.print(_("round %(i)s: survivors %(who)s", i=r.index, who=list(r.survivors))
                                         + (_(" (aborted: %(why)s)", why=r.aborted) if r.aborted else "")))
    card = model.card()
    if out_file is not None:
        out_file.write_text(json.dumps(card, indent=2))
    emit(card, True)


@federated_app.command("join", help=_("Answer federated training rounds as a holder: checks each plan, adds its noise, "
                                      "joins over secure aggregation.\n"
           "\n"
           "Refuses to run without a lifetime ε cap (--max-epsilon) or a plan pinned by its digest (--plan-digest); "
           "prints\n"
           "each plan it accepts before contributing to it."))
def federated_join(
    data: Annotated[Path, typer.Option(help=_("your Parquet file (it never leaves this machine)"))],
    max_epsilon: Annotated[float | None, typer.Option(help=_("your lifetime ε cap: refuse plans that, with what you "
                                                           "contributed before, would exceed it"))] = None,
    max_delta: Annotated[float | None, typer.Option(help=_("refuse plans above this δ"))] = None,
    plan: Annotated[str | None, typer.Option(help=_("only this plan id"))] = None,
    plan_digest: Annotated[str | None, typer.Option(help=_("only the plan with this digest (sha256:… or sm3:…, the "
                                                         "home's hash, printed by `federated train`)"))] = None,
    ledger: Annotated[Path | None, typer.Option(help=_("your record of contributions (default: DATA.ledger.json)"))
                      ] = None,
    timeout: Annotated[float, typer.Option(help=_("stop after this many seconds"))] = 3600.0,
    as_json: JsonOpt = False,
) -> None:
    """Answer federated training rounds as a holder: checks each plan, adds its noise, joins over secure aggregation.

    Refuses to run without a lifetime ε cap (--max-epsilon) or a plan pinned by its digest (--plan-digest); prints
    each plan it accepts before contributing to it."""
    from veilbox.federated import FederatedPlan, Holder, home_hash_alg

    if max_epsilon is None and plan_digest is None:
        raise CliError(_("refusing to join without a lifetime ε cap or a pinned plan"),
                       _("give --max-epsilon, or pin the plan by its digest with --plan-digest (a plan id alone does "
                         "not fix the plan's ε)"))
    if max_epsilon is not None and not max_epsilon > 0:
        raise typer.BadParameter(_("--max-epsilon must be positive"))
    err.print(f"accepting: plan {plan_digest or plan or 'any'}; lifetime ε cap "
              f"{'none' if max_epsilon is None else max_epsilon}; δ cap {'none' if max_delta is None else max_delta}")

    def show(accepted: FederatedPlan) -> None:
        sm = accepted.summary(alg)
        err.print(f"accepted plan {sm['plan_id']} ({sm['digest']}): holders {', '.join(sm['holders'])}; "
                  f"t={sm['threshold']}; {sm['rounds']} rounds; ε={sm['epsilon']:.4g}, δ={sm['delta']:g}; "
                  f"features {', '.join(sm['features'])} → {sm['label']}")

    ledger = ledger or data.with_name(data.name + ".ledger.json")
    with client() as c:
        alg = home_hash_alg(c)  # the home suite's hash names plans (sha256: intl, sm3: sm)
        report = Holder(c, data, max_epsilon=max_epsilon, max_delta=max_delta, plan_id=plan, plan_digest=plan_digest,
                        ledger=ledger, on_accept=show, hash_alg=alg).run(timeout_s=timeout)
    emit({"name": report.name, "accepted": report.accepted, "joined": report.joined, "refused": report.refused},
         True)


cli_work.register(app)
cli_psi.register(app, verify_app)
cli_he.register(cli_work.model_app, verify_app)
cli_audit.register(audit_app)
cli_profile.register(app)
cli_keys.register(app)
cli_authority.register(app)
cli_complaints.register(app)
cli_alerts.register(app)
cli_certificates.register(app)
cli_report.register(app)
cli_consent.register(app)
cli_policy.register(app)
cli_revenue.register(app, cli_work.agreement_app)
cli_disposal.register(cli_work.agreement_app)


def main() -> None:
    """The `veilbox` entry point: one-line errors and stable exit codes (`veilbox._cli_common.run`)."""
    run(app)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
