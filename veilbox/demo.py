"""`veilbox demo`: the whole story on synthetic data, through a real gateway over real HTTP.

Chapters: the city sets up the domain; owners register data (raw rows stay inside); analysts see only the
declaration and a mock; the owner proposes agreements and the grantees accept; the operator runs DP
statistics; the operator trains a DP credit model and a custom job, both reviewed and approved by the owner;
the bank verifies incomes (plain and encrypted) and scores applicants under encryption; PSI and federated
training across banks; the home then enforces the consent registry and the bank's checks name registered consents,
one revoked and refused, with the person's subject-access report (`veilbox.demo_people`); a second owner joins a
two-owner agreement with a price and revenue shares and the month's statement splits the charges to the cent
(`veilbox.demo_people`); the home turns filing (备案) on and the data authority takes one agreement through named
reviewers, filing, use, a rectification order (整改), suspension, revocation and the signed disposal record, and
reads its incident reports and the quarter's report (`veilbox.demo_authority`); the regulator verifies the audit
chain. With the ``veilbox[syft]`` extra, a PySyft data scientist does the custom-code loop through
syft-rds's own client (`veilbox.demo_syft`).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from veilbox.client import ApiError, Client

console = Console()
MARKER = ".veilbox-demo"
DATA_OWNER = "city-tax-bureau"  # registers only files in <import root>/city-tax-bureau/


@dataclass
class Story:
    admin: Client
    clients: dict[str, Client] = field(default_factory=dict)
    facts: list[str] = field(default_factory=list)
    # what chapters hand to later chapters: "agreement:operator", "agreement:bank", "model_id", ...
    state: dict[str, Any] = field(default_factory=dict)

    def say(self, title: str, body: str) -> None:
        console.print(Panel(body, title=title, title_align="left"))


def _prepare_home(home: Path | None) -> Path:
    if home is None:
        return Path(tempfile.mkdtemp(prefix="veilbox-demo-"))
    if home.exists() and any(home.iterdir()):
        if not (home / MARKER).exists():
            raise SystemExit(f"{home} exists and is not a demo home; choose another --home")
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    return home


def chapter_setup(story: Story) -> None:
    people = {DATA_OWNER: "owner", "risk-lab": "operator", "icbc-wuxi": "bank",
              "city-data-regulator": "regulator"}
    t = Table("principal", "role")
    for name, role in people.items():
        p = story.admin.create_principal(name, role)
        story.clients[role] = story.admin.with_token(p["token"])
        t.add_row(name, role)
    console.print(t)
    story.facts.append(f"{len(people)} principals created, one per role; tokens stored only as hashes")


def chapter_catalog(story: Story, data: Any) -> None:
    owner = story.clients["owner"]
    for spec_file in (data.tax_income_spec, data.enterprise_registry_spec):
        import json

        ds = owner.register_dataset(json.loads(Path(spec_file).read_text()))
        story.facts.append(f"registered {ds['name']}: {ds['rows']} rows, {ds['fingerprint'][:23]}…")
    seen = story.clients["operator"].dataset("tax_income")
    mock = story.clients["operator"].mock("tax_income", rows=3)
    shown = ["person_id", "district", "age", "industry", "monthly_income", "has_default"]
    idx = [mock["columns"].index(c) for c in shown]
    t = Table(*shown, title="what the operator sees: a mock generated from the declaration")
    for r in mock["rows"]:
        t.add_row(*[str(r[i]) for i in idx])
    console.print(t)
    story.facts.append(f"the operator sees the schema and a mock, not the row count (rows={seen['rows']})")
    try:
        story.clients["operator"].register_dataset({"name": "x", "source": "/etc/passwd", "columns": {}})
    except ApiError as e:
        story.facts.append(f"an operator trying to register data is refused: {e.code}")


def _window() -> tuple[str, str]:
    import datetime as dt

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return ((now - dt.timedelta(days=1)).isoformat().replace("+00:00", "Z"),
            (now + dt.timedelta(days=365)).isoformat().replace("+00:00", "Z"))


def chapter_agreements(story: Story) -> None:
    """The owner proposes three agreements (授权运营协议); the operator and the bank accept theirs."""
    owner, operator, bank = story.clients["owner"], story.clients["operator"], story.clients["bank"]
    start, end = _window()
    common = {"datasets": ["tax_income"], "valid_from": start, "valid_until": end,
              "exit": {"on_expiry": "seal_outputs"}}
    docs: dict[str, dict[str, Any]] = {
        "agreement:operator": {
            **common, "title": "SME credit-default model", "grantee": "risk-lab", "purposes": ["credit_risk"],
            "columns": {"tax_income": ["age", "industry", "district", "monthly_income", "social_insurance_months",
                                       "has_default"]},
            "job_kinds": ["query", "train", "code"], "budget": {"epsilon": 8, "delta": "1e-5"},
            "min_group_units": 20, "approval": "owner_each_job", "quotas": {"jobs_per_day": 50}},
        "agreement:stats": {
            **common, "title": "District income statistics", "grantee": "risk-lab", "purposes": ["statistics"],
            "columns": {"tax_income": ["district", "gender", "age", "industry", "monthly_income"]},
            "job_kinds": ["query"], "budget": {"epsilon": 3}, "min_group_units": 20,
            "approval": "auto_within_budget"},
        "agreement:bank": {
            **common, "title": "Income verification and credit scoring", "grantee": "icbc-wuxi",
            "purposes": ["credit_risk"], "columns": {"tax_income": ["monthly_income", "social_insurance_months",
                                                                    "age", "industry", "district"]},
            "job_kinds": ["verify", "score"], "budget": {"epsilon": 1}, "min_group_units": 20,
            "approval": "owner_each_job",
            "quotas": {"verify_per_subject_per_day": 3, "distinct_params_per_subject": 2, "scores_per_day": 5000}},
    }
    t = Table("agreement", "grantee", "jobs", "approval", "ε budget", "state")
    for key, doc in docs.items():
        ag = owner.propose_agreement(doc)
        holder = bank if doc["grantee"] == "icbc-wuxi" else operator
        ag = holder.accept_agreement(ag["id"], document_hash=ag["document_hash"])
        story.state[key] = ag["id"]
        t.add_row(ag["title"], ag["grantee"], ",".join(ag["job_kinds"]), ag["approval"],
                  str(doc["budget"]["epsilon"]), ag["state"])
    console.print(t)
    story.facts.append("the tax bureau proposed 3 agreements (授权运营协议); the operator and the bank accepted "
                       "theirs, each bound to the document hash they read")
    try:
        bank.query(story.state["agreement:stats"], "SELECT COUNT(*) AS n FROM tax_income", 0.1)
    except ApiError as e:
        story.facts.append(f"the bank querying the operator's agreement is refused: {e.code}")


def _answer(title: str, r: dict[str, Any]) -> Table:
    bars = r["error_bars"]
    t = Table(*[f"{c}  (±{bars[c]:,.0f})" if c in bars and isinstance(bars[c], float) else c
                for c in r["columns"]], title=title,
              caption=f"ε {r['cost']['epsilon']} · {r['suppressed_groups']} small groups suppressed")
    for row in r["rows"]:
        t.add_row(*[f"{v:,.0f}" if isinstance(v, float) else str(v) for v in row])
    return t


def chapter_queries(story: Story) -> None:
    """The operator previews (free) and runs three DP statistics; differencing drains the budget."""
    op = story.clients["operator"]
    ag = story.state["agreement:stats"]
    by_district = "SELECT district, COUNT(*) AS people FROM tax_income GROUP BY district ORDER BY district"
    pv = op.preview_query(ag, by_district, 0.5)
    console.print(f"[dim]preview (spends nothing): canonical SQL {len(pv['canonical_sql'])} chars, "
                  f"cost ε={pv['cost']['epsilon']}, 95% error ±{pv['expected_error']['people']:.1f}[/]")
    queries = [
        ("people per district", by_district, 0.5),
        ("average monthly income by district × gender",
         "SELECT district, gender, AVG(monthly_income) AS avg_income FROM tax_income "
         "GROUP BY district, gender ORDER BY district, gender", 1.0),
        ("total monthly income of 30–39 year-olds by industry",
         "SELECT industry, SUM(monthly_income) AS total_income FROM tax_income WHERE age BETWEEN 30 AND 39 "
         "GROUP BY industry ORDER BY industry", 0.5),
    ]
    for title, sql, eps in queries:
        console.print(_answer(title, op.query(ag, sql, eps)))
    b = op.budget(ag)
    story.facts.append(f"the operator ran 3 DP queries (noise from OpenDP's discrete Laplace); "
                       f"ε spent {b['exact']['epsilon_spent']} of {b['exact']['epsilon_total']}")
    tries = 0
    try:
        while True:
            op.query(ag, "SELECT COUNT(*) AS n FROM tax_income WHERE age <= 40", 0.25)
            op.query(ag, "SELECT COUNT(*) AS n FROM tax_income WHERE age < 40", 0.25)
            tries += 2
    except ApiError as e:
        story.facts.append(f"a differencing attack (age ≤ 40 minus age < 40) paid ε for each of its {tries} "
                           f"answers and then got {e.code}")


def chapter_regulator(story: Story, home: Path | None = None) -> None:
    reg = story.clients["regulator"]
    v = reg.audit_verify()
    page = reg.audit(limit=1000)
    denied = sum(1 for e in page["entries"] if e["decision"] != "allow")
    story.facts.append(f"regulator: audit chain ok={v['ok']} over {v['entries']} entries "
                       f"({denied} denied or failed calls recorded too), head {str(v['head'])[:16]}…")
    if not v["ok"]:
        raise SystemExit(f"audit chain verification failed at seq {v['first_bad_seq']}")
    model_id = story.state.get("model_id")
    if model_id:  # lineage: the released model → its job → the agreement → the fingerprints it was trained on
        tr = reg.lineage(reg.model(model_id)["output_digest"])
        ds = ", ".join(f"{d['name']} {d['fingerprint_bound'][:19]}…" for d in tr["datasets"])
        story.facts.append(f"regulator: model {model_id} traced to job {tr['job']['id']} (approved by "
                           f"{tr['job']['approved_by']}) under {tr['agreement']['id']}, trained on {ds}")
    month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    rep = reg.audit_report(month)
    if home is not None:
        (home / f"report-{month}.pdf").write_bytes(reg.audit_report(month, "pdf"))
    story.facts.append(f"regulator: monthly report {month}: {rep['entries']} entries, {len(rep['agreements'])} "
                       f"agreements, {len(rep['products'])} products"
                       + (f"; PDF at {home / f'report-{month}.pdf'}" if home is not None else ""))


def run_demo(home: Path | None = None, rows: int = 50_000, suite: str = "intl") -> None:
    """The whole story on a fresh home of the cryptographic suite ``suite`` (``intl`` or ``sm``: SM3, SM2, SM4)."""
    from catalog.datagen import generate
    from gateway.context import init_home, open_context
    from gateway.server import BackgroundServer
    from gateway.settings import Settings
    from veilbox.demo_authority import chapter_authority
    from veilbox.demo_bank import chapter_bank
    from veilbox.demo_federated import chapter_federated
    from veilbox.demo_models import chapter_models
    from veilbox.demo_people import CO_OWNER, chapter_consent, chapter_revenue
    from veilbox.demo_psi import chapter_psi
    from veilbox.demo_syft import chapter_syft  # runs only with the veilbox[syft] extra installed

    started = time.monotonic()
    home = _prepare_home(home)
    (home / MARKER).write_text("demo home; `veilbox demo --home` may wipe it\n")
    console.rule("[bold]Veilbox demo: usable but invisible (可用不可见)")
    settings = Settings(home=home / "service", import_roots=[home / "incoming"], suite=suite)
    with console.status(f"generating {rows} synthetic people…"):  # into the tax bureau's own import directory
        data = generate(settings.owner_import_dirs(DATA_OWNER)[0], rows=rows)
    admin_token = init_home(settings)
    ctx = open_context(settings)
    with BackgroundServer(ctx) as server:
        console.print(f"gateway listening on {server.url} (home {settings.home}, cryptographic suite {suite})")
        admin = Client(server.url, admin_token)
        story = Story(admin)
        chapter_setup(story)
        chapter_catalog(story, data)
        chapter_agreements(story)
        chapter_queries(story)
        chapter_models(story)
        chapter_bank(story)
        chapter_psi(story, data)
        chapter_federated(story)
        chapter_syft(story)
        # the later chapters change the home's choices (consent enforced, filing on) after the earlier ones ran
        chapter_consent(story, ctx.engine)
        chapter_revenue(story, settings.owner_import_dirs(CO_OWNER)[0])
        chapter_authority(story, ctx.engine)
        chapter_regulator(story, home)
    ctx.close()
    tokens = home / "tokens.json"  # demo only: lets you sign in to the console as each party afterwards
    tokens.write_text(json.dumps({role: c._http.headers["Authorization"].split()[1]
                                  for role, c in story.clients.items()}, indent=1))
    tokens.chmod(0o600)
    body = "\n".join(f"• {f}" for f in story.facts)
    story.say("What happened", body + f"\n\ndone in {time.monotonic() - started:.1f}s; home: {home}\n"
              f"browse it: veilbox serve --home {settings.home}, open http://127.0.0.1:8000/console and sign in "
              f"with a token from {tokens}")
