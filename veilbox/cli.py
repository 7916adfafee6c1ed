"""`veilbox`: the command line for every role. Talks to a running gateway over HTTP (`--url`/`--token` or
VEILBOX_URL/VEILBOX_TOKEN); `init`, `serve`, `datagen`, `demo` and `audit verify --home` work locally."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from veilbox import cli_work
from veilbox._cli_common import HomeOpt, JsonOpt, client, emit, err, out, state
from veilbox.client import ApiError

app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False)
principal_app = typer.Typer(help="Principals and their roles (admin).", no_args_is_help=True)
dataset_app = typer.Typer(help="Datasets in the catalog (owners register; everyone reads schemas and mocks).",
                          no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log (regulators verify and export).", no_args_is_help=True)
app.add_typer(principal_app, name="principal")
app.add_typer(dataset_app, name="dataset")
app.add_typer(audit_app, name="audit")
verify_app = typer.Typer(help="Verification products (核验): owners define yes/no questions, banks ask them.",
                         no_args_is_help=True)
app.add_typer(verify_app, name="verify")

@app.callback()
def _global(
    url: Annotated[str, typer.Option(envvar="VEILBOX_URL", help="gateway URL")] = "http://127.0.0.1:8000",
    token: Annotated[str | None, typer.Option(envvar="VEILBOX_TOKEN", help="bearer token")] = None,
) -> None:
    state.url, state.token = url, token


def _settings(home: Path | None, **kw: Any) -> Any:
    from gateway.settings import Settings

    if home is not None:
        kw["home"] = home
    return Settings(**kw)


# -- local commands ----------------------------------------------------------------------------------------
@app.command()
def init(home: HomeOpt = None, as_json: JsonOpt = False,
         hash_alg: Annotated[str, typer.Option(help="audit chain hash: sha256 or sm3")] = "sha256") -> None:
    """Create a service home: directories, keys, metadata schema and the admin principal."""
    from gateway.context import AlreadyInitialised, init_home

    s = _settings(home, hash_alg=hash_alg)
    try:
        token = init_home(s)
    except AlreadyInitialised as e:
        err.print(f"[red]{e}[/]")
        raise typer.Exit(1) from None
    data = {"home": str(s.home.resolve()), "admin_token": token}
    if as_json:
        out.print_json(json.dumps(data))
    else:
        out.print(f"Initialised [bold]{data['home']}[/]\nadmin token (shown once): [bold]{token}[/]")


@app.command()
def serve(home: HomeOpt = None, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the HTTP gateway (API under /v1, OpenAPI at /openapi.json, docs at /docs)."""
    from gateway.server import run

    run(_settings(home, host=host, port=port))


@app.command()
def datagen(
    out_dir: Annotated[Path, typer.Option("--out", help="output directory")] = Path("veilbox-data"),
    rows: Annotated[int, typer.Option(help="people in tax_income")] = 100_000,
    seed: int = 20261122,
) -> None:
    """Write the synthetic city data family (tax_income, enterprise_registry) with declaration files."""
    from tqdm import tqdm

    from catalog.datagen import generate

    with tqdm(total=rows + max(10, rows // 20), unit="rows", unit_scale=True, file=sys.stderr) as bar:
        g = generate(out_dir, rows=rows, seed=seed, progress=bar.update)
    out.print_json(json.dumps({"tax_income": str(g.tax_income), "enterprise_registry": str(g.enterprise_registry),
                               "specs": [str(g.tax_income_spec), str(g.enterprise_registry_spec)],
                               "rows": g.rows, "enterprises": g.enterprises}))


@app.command()
def demo(home: HomeOpt = None, rows: Annotated[int, typer.Option(help="people to generate")] = 50_000) -> None:
    """Run the whole story end to end on synthetic data, over real HTTP, and print what happened."""
    from veilbox.demo import run_demo

    run_demo(home, rows)


# -- principals -----------------------------------------------------------------------------------------
@principal_app.command("add")
def principal_add(name: str, role: Annotated[str, typer.Option(help="admin|owner|operator|bank|regulator")],
                  as_json: JsonOpt = False) -> None:
    """Create a principal; prints its token once."""
    with client() as c:
        p = c.create_principal(name, role)
    emit(p, True) if as_json else out.print(f"{p['name']} ({p['role']}) token: [bold]{p['token']}[/]")


@principal_app.command("list")
def principal_list(as_json: JsonOpt = False) -> None:
    with client() as c:
        ps = c.principals()
    t = Table("id", "name", "role")
    for p in ps:
        t.add_row(p["id"], p["name"], p["role"])
    emit(ps, as_json, t)


@principal_app.command("me")
def principal_me() -> None:
    with client() as c:
        emit(c.me(), True)


# -- datasets -------------------------------------------------------------------------------------------
@dataset_app.command("register")
def dataset_register(
    spec_file: Annotated[Path, typer.Argument(help="declaration JSON (as written by `veilbox datagen`)")],
    source: Annotated[str | None, typer.Option(help="override the source path (server side)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a dataset (owner): the server copies the source into the sandbox and fingerprints it."""
    spec = json.loads(spec_file.read_text())
    if source:
        spec["source"] = source
    with client() as c, out.status("registering (validate, clamp, copy, fingerprint)…"):
        ds = c.register_dataset(spec)
    if as_json:
        emit(ds, True)
        return
    out.print(f"registered [bold]{ds['name']}[/] rows={ds['rows']} fingerprint={ds['fingerprint']}")
    ing = ds.get("ingest", {})
    if ing.get("clamped"):
        out.print(f"clamped to declared bounds: {ing['clamped']}")
    if ing.get("out_of_domain"):
        out.print(f"values outside declared domains: {ing['out_of_domain']}")


@dataset_app.command("list")
def dataset_list(as_json: JsonOpt = False) -> None:
    with client() as c:
        dss = c.datasets()
    t = Table("name", "owner", "grade", "personal", "columns", "fingerprint")
    for d in dss:
        t.add_row(d["name"], d["owner"], d["grade"], str(d["personal"]), str(len(d["columns"])), d["fingerprint"][:23])
    emit(dss, as_json, t)


@dataset_app.command("show")
def dataset_show(name: str) -> None:
    with client() as c:
        emit(c.dataset(name), True)


@dataset_app.command("mock")
def dataset_mock(name: str, rows: int = 10, seed: int = 0, as_json: JsonOpt = False) -> None:
    """Synthetic rows from the declaration (never from the data)."""
    with client() as c:
        m = c.mock(name, rows, seed)
    t = Table(*m["columns"], title=f"{name} (mock, seed {seed})")
    for r in m["rows"]:
        t.add_row(*[str(v) for v in r])
    emit(m, as_json, t)


# -- audit ------------------------------------------------------------------------------------------------
@audit_app.command("list")
def audit_list(since: int = 0, limit: int = 50, as_json: JsonOpt = False) -> None:
    with client() as c:
        page = c.audit(since, limit)
    t = Table("seq", "ts", "actor", "action", "agreement", "dataset", "decision", "code", "ε")
    for e in page["entries"]:
        t.add_row(str(e["seq"]), e["ts"][:19], e["actor"], e["action"], e["agreement_id"] or "",
                  e["dataset"] or "", e["decision"], e["code"] or "", e["epsilon"] or "")
    emit(page, as_json, t)


@audit_app.command("verify")
def audit_verify(home: Annotated[Path | None, typer.Option(
        "--home", help="verify a local home offline instead of asking the gateway")] = None) -> None:
    """Check the hash chain and signed checkpoints; exit 1 and name the first bad seq on failure."""
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


@audit_app.command("export")
def audit_export(out_file: Annotated[Path, typer.Option("--out")] = Path("veilbox-audit.parquet")) -> None:
    with client() as c:
        out_file.write_bytes(c.audit_export())
    out.print(f"wrote {out_file}")


# -- verification ---------------------------------------------------------------------------------------
def _param(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise typer.BadParameter(f"expected NAME=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return name, value


@verify_app.command("define")
def verify_define(spec_file: Annotated[Path, typer.Argument(help="product JSON as in API.md (name, dataset, "
                                                                  "subject_column, predicate, params)")]) -> None:
    """Define a verification product over one of your datasets (owner); the predicate is vetted like SQL."""
    with client() as c:
        emit(c.define_verification(json.loads(spec_file.read_text())), True)


@verify_app.command("list")
def verify_list(as_json: JsonOpt = False) -> None:
    with client() as c:
        items = c.verifications()
    t = Table("name", "dataset", "subject", "predicate", "params", "encrypted form")
    for p in items:
        form = p.get("encrypted_form")
        t.add_row(p["name"], p["dataset"], p["subject_column"], p["predicate"],
                  ", ".join(f"{k}: {v}" for k, v in p["params"].items()),
                  f"{form['column']} {form['op']} :{form['param']}" if form else "-")
    emit(items, as_json, t)


@verify_app.command("check")
def verify_check(
    name: str,
    agreement: Annotated[str, typer.Option(help="agreement id (agr_…)")],
    subject: Annotated[str, typer.Option(help="the subject's identifier")],
    consent: Annotated[str, typer.Option(help="reference to the subject's consent")],
    param: Annotated[list[str] | None, typer.Option(help="NAME=VALUE (JSON value), repeatable")] = None,
) -> None:
    """Ask a product's question about one subject (bank): prints the answer and the signed receipt."""
    params = dict(_param(p) for p in (param or []))
    with client() as c:
        emit(c.check(name, agreement, subject, params, consent_ref=consent), True)


cli_work.register(app)


def main() -> None:
    try:
        app()
    except ApiError as e:
        err.print(f"[red]{e.code}[/] ({e.status}): {e.message}")
        for d in e.details:
            err.print(f"  - {json.dumps(d)}")
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
