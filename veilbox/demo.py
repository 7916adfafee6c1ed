"""`veilbox demo`: the whole story on synthetic data, through a real gateway over real HTTP.

Chapters: the city sets up the domain; owners register data (raw rows stay inside); analysts see only the
declaration and a mock; the regulator verifies the audit chain. Later chapters (agreements, private SQL,
model training, verification, encrypted scoring, secure aggregation) join as those capabilities land.
"""

from __future__ import annotations

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
    people = {"city-tax-bureau": "owner", "risk-lab": "operator", "icbc-wuxi": "bank",
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


def chapter_regulator(story: Story) -> None:
    reg = story.clients["regulator"]
    v = reg.audit_verify()
    page = reg.audit(limit=1000)
    denied = sum(1 for e in page["entries"] if e["decision"] != "allow")
    story.facts.append(f"regulator: audit chain ok={v['ok']} over {v['entries']} entries "
                       f"({denied} denied or failed calls recorded too), head {str(v['head'])[:16]}…")
    if not v["ok"]:
        raise SystemExit(f"audit chain verification failed at seq {v['first_bad_seq']}")


def run_demo(home: Path | None = None, rows: int = 50_000) -> None:
    from catalog.datagen import generate
    from gateway.context import init_home, open_context
    from gateway.server import BackgroundServer
    from gateway.settings import Settings

    started = time.monotonic()
    home = _prepare_home(home)
    (home / MARKER).write_text("demo home; `veilbox demo --home` may wipe it\n")
    console.rule("[bold]Veilbox demo: usable but invisible (可用不可见)")
    settings = Settings(home=home / "service", import_roots=[home / "incoming"])
    with console.status(f"generating {rows} synthetic people…"):
        data = generate(home / "incoming", rows=rows)
    admin_token = init_home(settings)
    ctx = open_context(settings)
    with BackgroundServer(ctx) as server:
        console.print(f"gateway listening on {server.url} (home {settings.home})")
        admin = Client(server.url, admin_token)
        story = Story(admin)
        chapter_setup(story)
        chapter_catalog(story, data)
        chapter_regulator(story)
    ctx.close()
    body = "\n".join(f"• {f}" for f in story.facts)
    story.say("What happened", body + f"\n\ndone in {time.monotonic() - started:.1f}s; home: {home}")
