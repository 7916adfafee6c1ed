"""Shared fixtures: synthetic data, a fresh service home, and a real gateway on a loopback port."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from catalog.datagen import Generated, generate
from catalog.keyring import default_key_file
from gateway.context import AppContext, init_home, open_context
from gateway.server import BackgroundServer
from gateway.services.agreements import filing_required
from gateway.settings import Settings
from policies.agreements.sections import FILING_SECTIONS
from policies.agreements.template import example_document
from tests.pg import PgServer, PgUnavailable
from veilbox.client import Client

#: The owner whose import directory holds the synthetic city (owners register only from ``<root>/<owner>/``).
DATA_OWNER = "city-tax-bureau"


@pytest.fixture(scope="session")
def city_data(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """A small synthetic city (5000 people), generated once per session into ``<import root>/city-tax-bureau/``."""
    return generate(tmp_path_factory.mktemp("incoming") / DATA_OWNER, rows=5000, seed=7)


# --- the two stores ----------------------------------------------------------------------------------------
#: Suites that run on both SQLite and PostgreSQL: every test in them that builds a service home (``settings``) or
#: asks for ``store`` runs twice, ``[sqlite]`` and ``[postgresql]``. Paths relative to the repository.
BOTH_STORES = (
    "tests/system/http/flows",
    "tests/system/http/jobs/test_jobs_query_http.py",
    "tests/system/http/gateway/test_idempotency.py",
    "tests/system/http/gateway/test_health_ready.py",
    "tests/system/http/verify/test_verify_http.py",
    "tests/system/http/secagg/test_secagg_http_rounds.py",
    "tests/system/http/console/test_console_http.py",
    "tests/system/http/console/test_console_budgets.py",
    "tests/unit/gateway",
    "tests/unit/policies",
    "tests/system/stores",
)
STORES = ("sqlite", "postgresql")
#: Files inside a `BOTH_STORES` suite whose tests exercise the engines or the pages rather than the store: they run
#: on SQLite only, except the tests that opt in with ``@ON_BOTH_STORES`` (the ones whose outcome is a store write:
#: a debit, a refund, a cap, a chain). The store's own semantics are covered on both stores by tests/unit.
SQLITE_ONLY = (
    "tests/system/http/flows/test_oracles_http.py",
    "tests/system/http/flows/test_queries_http.py",
    "tests/system/http/console/test_console_http.py",
)
ON_BOTH_STORES = pytest.mark.parametrize("store", STORES)
#: The converse inside a `BOTH_STORES` file: ``@ON_SQLITE`` on a test whose subject is not the store (a document's
#: validation, a predicate's vetting, a role check, an origin check, a latency pad, the heavy lane) runs it on SQLite
#: only; the store writes such a test makes (a refusal's audit entry) are tested on PostgreSQL by the suites' others.
ON_SQLITE = pytest.mark.parametrize("store", ["sqlite"])
REPO = Path(__file__).resolve().parent.parent


def runs_on_both_stores(path: Path) -> bool:
    rel = path.resolve().relative_to(REPO).as_posix()
    return rel not in SQLITE_ONLY and any(rel == p or rel.startswith(p + "/") for p in BOTH_STORES)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store" in metafunc.fixturenames and runs_on_both_stores(metafunc.definition.path):
        if not any(m.name == "parametrize" and "store" in str(m.args[0]) for m in metafunc.definition.iter_markers()):
            metafunc.parametrize("store", STORES)


#: The long generator profiles (`make test-long`): collected always, skipped before their fixtures are built unless
#: ``-m`` names their marker, so a worker that draws one never builds a module's world only to skip.
LONG_PROFILES = {
    "fuzz_long": "the long fuzzing profile runs with -m fuzz_long (make test-long)",
    "slow_neighbours": "the long neighbouring-dataset profile runs with -m slow_neighbours (make test-long)",
    "spark_long": "the long Spark equivalence profile runs with -m spark_long (make test-long)",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    selected = config.getoption("-m") or ""
    for item in items:
        for marker, reason in LONG_PROFILES.items():
            if marker not in selected and item.get_closest_marker(marker) is not None:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def store() -> str:
    """Which metadata store a test runs on: ``sqlite`` unless its suite is in `BOTH_STORES`."""
    return "sqlite"


def started_pg_server() -> Iterator[PgServer]:
    """A started throwaway cluster, stopped afterwards; the test is skipped without server binaries (failed in
    CI, which must test both stores). The body of every PostgreSQL server fixture."""
    try:
        server = PgServer().start()
    except PgUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {e}")
        pytest.skip(str(e))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """This pytest process's throwaway PostgreSQL cluster (tests/pg.py), started on first use."""
    yield from started_pg_server()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty PostgreSQL database of this test's own (dropped afterwards)."""
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)


@pytest.fixture
def database_url(store: str, request: pytest.FixtureRequest) -> str | None:
    """The service's store URL: ``None`` (SQLite in the home) or a fresh PostgreSQL database."""
    return request.getfixturevalue("pg_url") if store == "postgresql" else None


#: Both cryptographic suites (docs/crypto.md): ``@BOTH_SUITES`` on a test runs it once per suite, the home made with
#: ``veilbox init --suite``; every other test runs on the default ``intl``.
BOTH_SUITES = pytest.mark.parametrize("crypto_suite", ["intl", "sm"])


@pytest.fixture
def crypto_suite() -> str:
    """The cryptographic suite of the test's home (`settings`): ``intl`` unless a test parametrises it."""
    return "intl"


@pytest.fixture
def settings(tmp_path: Path, city_data: Generated, database_url: str | None, crypto_suite: str) -> Settings:
    return Settings(home=tmp_path / "home", import_roots=[city_data.tax_income.parent.parent, tmp_path / "import"],
                    latency_bucket_ms=0, checkpoint_every=5, env="test", database_url=database_url,
                    suite=crypto_suite, alert_every_s=86_400)  # alert tests evaluate the rules themselves


@dataclass
class Service:
    ctx: AppContext
    url: str
    admin: Client
    settings: Settings
    clients: list[Client] = field(default_factory=list)  # closed with the service: no connection outlives it

    def client(self, token: str) -> Client:
        client = Client(self.url, token)
        self.clients.append(client)
        return client

    def principal(self, name: str, role: str) -> Client:
        return self.client(self.admin.create_principal(name, role)["token"])


#: One freshly initialised home per cryptographic suite and pytest process, and its admin token (`initialised_home`).
_HOME_TEMPLATES: dict[str, tuple[Path, str]] = {}


def initialised_home(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`init_home` for the common test home (SQLite in the home, the default master key file beside it): the home
    `veilbox init` made once per suite in this pytest process, copied with its master key file. Each copy is the
    bytes a fresh `init_home` writes, with the template's keys and admin token (homes are never shared, only their
    starting bytes). Any other home (PostgreSQL, a configured master key or token) is initialised for real."""
    plain = (settings.database_url is None and settings.master_key is None and settings.master_key_file is None
             and settings.pkcs11_module is None and not settings.home.exists())
    if not plain:
        return init_home(settings)
    if settings.suite not in _HOME_TEMPLATES:
        home = tmp_path_factory.mktemp(f"template-{settings.suite}") / "home"
        _HOME_TEMPLATES[settings.suite] = (home, init_home(settings.model_copy(update={"home": home})))
    home, token = _HOME_TEMPLATES[settings.suite]
    shutil.copytree(home, settings.home, symlinks=True)
    shutil.copy2(default_key_file(home), default_key_file(settings.home))
    return token


@pytest.fixture
def service(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A real uvicorn gateway on a free loopback port over a fresh home (`initialised_home`)."""
    token = initialised_home(settings, tmp_path_factory)
    ctx = open_context(settings)
    with BackgroundServer(ctx) as srv:
        admin = Client(srv.url, token)
        svc = Service(ctx, srv.url, admin, settings)
        yield svc
        for client in svc.clients:
            client.close()
        admin.close()
    ctx.close()


@pytest.fixture
def tax_spec(city_data: Generated) -> dict:
    return json.loads(city_data.tax_income_spec.read_text())


@dataclass
class Parties:
    """A service with the tax bureau's data registered and one principal per role."""

    service: Service
    owner: Client
    operator: Client
    bank: Client
    regulator: Client
    tax_spec: dict

    def agreement(self, grantee: str = "risk-lab", accept: bool = True, **overrides: object) -> dict:
        """Propose (and by default accept) an agreement over tax_income; ``overrides`` replace document fields."""
        doc: dict = {
            "title": "SME credit model", "grantee": grantee, "datasets": ["tax_income"],
            "columns": {"tax_income": ["district", "age", "gender", "industry", "monthly_income", "tax_paid",
                                       "social_insurance_months", "has_default"]},
            "purposes": ["credit_risk"], "job_kinds": ["query", "train", "code", "verify", "score"],
            "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2030-01-01T00:00:00Z",
            "budget": {"epsilon": 5, "delta": "1e-6"}, "min_group_units": 5,
            "quotas": {"calls_per_day": 10000, "verify_per_subject_per_day": 3},
            "approval": "auto_within_budget", "exit": {"on_expiry": "seal_outputs"},
        }
        doc.update(overrides)
        if filing_required(self.service.ctx.engine):  # filing (备案) needs the contractual sections
            full = example_document(owner=DATA_OWNER, grantee=grantee, columns=doc["columns"])  # type: ignore[arg-type]
            doc = {**{k: full[k] for k in FILING_SECTIONS}, **doc}
        ag = self.owner.propose_agreement(doc)
        if accept:
            holder = self.operator if grantee == "risk-lab" else self.bank
            ag = holder.accept_agreement(ag["id"])
        return ag


@pytest.fixture
def parties(service: Service, tax_spec: dict) -> Parties:
    owner = service.principal(DATA_OWNER, "owner")
    owner.register_dataset(tax_spec)
    return Parties(service, owner, service.principal("risk-lab", "operator"),
                   service.principal("icbc-wuxi", "bank"), service.principal("city-data-regulator", "regulator"),
                   tax_spec)
