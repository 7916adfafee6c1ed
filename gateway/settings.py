"""Settings (pydantic-settings, prefix ``VEILBOX_``). Unsafe combinations are refused at load time, loudly."""

from __future__ import annotations

import ipaddress
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from catalog.storage import LocalStorage
from gateway.retention import ACCESS_AUDIT_FLOOR_DAYS
from sandbox.sql.vet import MAX_SQL_CHARS

SUITE_HASH = {"intl": "sha256", "sm": "sm3"}  # cryptosuite.suite_of(name).hash_name, spelt out for pydantic


class UnsafeSettings(ValueError):
    """A combination of settings that would weaken a guarantee; the service refuses to start."""


_Ceiling = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VEILBOX_", extra="ignore")

    home: Path = Path(".veilbox")
    storage_root: Path | None = Field(default=None, description="where registered data (data/) and models "
                                      "(models/) live (VEILBOX_STORAGE_ROOT; default the home): a directory "
                                      "several hosts may mount (catalog.storage)")
    env: Literal["development", "test", "production"] = "development"
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in home")
    suite: Literal["intl", "sm"] = Field(default="intl", description="the cryptographic suite (VEILBOX_SUITE): intl "
                                         "(SHA-256, Ed25519, AES-256-GCM) or sm (SM3, SM2, SM4-GCM); fixed at "
                                         "`veilbox init --suite`, a gateway whose setting disagrees refuses to start")
    hash_alg: Literal["sha256", "sm3"] = Field(default="sha256", description="the suite's hash, derived from `suite` "
                                               "(VEILBOX_HASH_ALG, deprecated: sm3 alone means suite sm)")
    checkpoint_every: int = Field(default=100, ge=1, le=100_000)
    import_roots: list[Path] = Field(default_factory=list, description="where dataset sources may be read: each "
                                     "owner only from <root>/<owner name>/")
    max_source_bytes: int = Field(default=20 << 30, ge=1)
    max_body_bytes: int = Field(default=16 << 20, ge=1024)
    latency_bucket_ms: int = Field(default=50, ge=0, le=10_000)
    anon_min_bucket: int = Field(default=1024, ge=2, le=1 << 20,
                                 description="anonymous checks: the fewest subjects a bucket may hold (k)")
    grade_epsilon_ceilings: dict[Literal["general", "important"], _Ceiling | None] = Field(
        default_factory=dict, description="the per-dataset ε ceiling of agreements by dataset grade "
        "(VEILBOX_GRADE_EPSILON_CEILINGS, JSON such as {\"important\": 2}; null: no ceiling); a grade left out keeps "
        "the default of the grade table (policies.grades, docs/grades.md)")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    tls_terminated: bool = Field(default=False, description="a TLS proxy fronts the service")
    token_ttl_days: int = Field(default=365, ge=1)
    worker: bool = Field(default=True, description="run the embedded background job worker in each `veilbox serve` "
                         "process (VEILBOX_WORKER; false when job workers run as `veilbox worker` processes)")
    http_workers: int = Field(default=1, ge=1, le=64, description="HTTP worker processes `veilbox serve` starts "
                              "(VEILBOX_HTTP_WORKERS); all serve one store")
    job_workers: int = Field(default=1, ge=1, le=64, description="job worker processes `veilbox worker` starts "
                             "(VEILBOX_JOB_WORKERS); each claims jobs from the store's queue")
    job_poll_s: float = Field(default=1.0, ge=0.05, le=60, description="how often an idle job worker looks at the "
                              "queue (VEILBOX_JOB_POLL_S): an approval made in another process is seen within it")
    worker_stop_grace_s: float = Field(default=30.0, ge=0, le=3600, description="on SIGTERM/SIGINT a job worker "
                                       "finishes its current job for at most this long (VEILBOX_WORKER_STOP_GRACE_S), "
                                       "then gives it up: failed and refunded at once (job.recover)")
    http_stop_grace_s: float = Field(default=30.0, ge=0, le=3600, description="on SIGTERM/SIGINT `veilbox serve` "
                                     "lets requests in flight finish for at most this long (VEILBOX_HTTP_STOP_GRACE_S)")
    access_log: bool = Field(default=False, description="write uvicorn's line per request to stderr "
                             "(VEILBOX_ACCESS_LOG); off by default: the audit log records every call, and the "
                             "line costs CPU on every request")
    db_pool_size: int = Field(default=5, ge=1, le=200, description="PostgreSQL connections each process keeps open "
                              "(VEILBOX_DB_POOL_SIZE); size max_connections for every process of the deployment")
    db_max_overflow: int = Field(default=10, ge=0, le=200, description="PostgreSQL connections a process may open "
                                 "beyond the pool under load (VEILBOX_DB_MAX_OVERFLOW)")
    db_pool_timeout_s: float = Field(default=30.0, gt=0, le=600, description="how long a request waits for a free "
                                     "PostgreSQL connection before failing (VEILBOX_DB_POOL_TIMEOUT_S)")
    engine_threads: int = Field(default=2, ge=1, le=64, description="DuckDB threads per query worker")
    engine_memory: str = Field(default="2GB", pattern=r"^[0-9]+(MB|GB)$", description="DuckDB memory limit")
    query_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    engines_per_dataset: int = Field(default=2, ge=1, le=64, description="query worker processes per dataset, "
                                     "started on first need (VEILBOX_ENGINES_PER_DATASET): queries on one dataset "
                                     "run this many at once; each holds its own DuckDB (engine_memory each), and "
                                     "checks have one more of their own")
    engine_wait_s: float = Field(default=60.0, gt=0, le=3600, description="how long a query waits for a free "
                                 "worker of its dataset (VEILBOX_ENGINE_WAIT_S); then it fails before reading, "
                                 "refunded (worker.unavailable_before_read)")
    spark_master: str = Field(default="local[2]", min_length=1, max_length=512,
                              description="Spark master for datasets declared engine: spark "
                              "(VEILBOX_SPARK_MASTER): local[N] in one process, or spark://host:7077 for a cluster")
    max_sql_chars: int = Field(default=MAX_SQL_CHARS, ge=1, le=MAX_SQL_CHARS,
                               description="longest SQL text a query may have (QUERY_REJECTED, rule too_long); "
                               "the vetter's default is also the ceiling")
    min_query_epsilon: float = Field(default=0.01, gt=0, le=100, allow_inf_nan=False,
                                     description="smallest ε a query may spend; below it INVALID_REQUEST")
    max_inflight_per_principal: int = Field(default=8, ge=1, le=1024,
                                            description="heavy calls (queries, previews, job submission, scoring, "
                                            "encrypted and anonymous checks, PSI) one principal may have in flight; "
                                            "beyond it QUOTA_EXCEEDED")
    heavy_lane: int = Field(default=8, ge=1, le=256, description="queries, previews and job submissions one "
                            "process runs at once (VEILBOX_HEAVY_LANE), in a lane of their own: checks, scoring, "
                            "reads, /health and /ready never wait behind them")
    heavy_queue: int = Field(default=64, ge=0, le=100_000, description="queries, previews and job submissions that "
                             "may wait for the heavy lane (VEILBOX_HEAVY_QUEUE); one more is QUOTA_EXCEEDED "
                             "(reason service.busy) with Retry-After")
    heavy_wait_s: float = Field(default=30.0, gt=0, le=3600, description="how long a call waits for the heavy lane "
                                "(VEILBOX_HEAVY_WAIT_S); then QUOTA_EXCEEDED (reason service.busy) with Retry-After")
    job_timeout_s: float = Field(default=1800.0, gt=0, le=86_400, description="wall clock for train/code jobs")
    job_lease_s: float = Field(default=30.0, gt=0, le=3600, description="how long a job's worker lease holds "
                               "without a heartbeat (renewed every third of it); then a sweeper takes the job over")
    withdraw_grace_s: float = Field(default=7 * 86_400.0, ge=0, le=366 * 86_400, description="how long a withdrawn "
                                    "dataset's sealed copy is kept before the job worker destroys its data key and "
                                    "deletes it (VEILBOX_WITHDRAW_GRACE_S; 0: at the worker's next sweep)")
    complaint_days: int = Field(default=15, ge=1, le=365, description="days from filing to a complaint's or "
                                "objection's deadline (VEILBOX_COMPLAINT_DAYS)")
    # alerts (监测预警, gateway.services.alerts, docs/alerts.md): the job worker evaluates the rules and delivers
    alert_every_s: float = Field(default=60.0, ge=1, le=86_400, description="how often the job worker evaluates "
                                 "the alert rules and delivers due webhooks (VEILBOX_ALERT_EVERY_S)")
    alert_budget_ratio: float = Field(default=0.8, gt=0, le=1, description="an agreement's spent share of its "
                                      "allowance on a dataset (ε or δ) at which a budget alert fires "
                                      "(VEILBOX_ALERT_BUDGET_RATIO)")
    alert_denied_count: int = Field(default=20, ge=1, le=1_000_000, description="refused calls of one principal "
                                    "in one window that raise an alert (VEILBOX_ALERT_DENIED_COUNT)")
    alert_denied_window_s: float = Field(default=300.0, ge=1, le=30 * 86_400, description="its window "
                                         "(VEILBOX_ALERT_DENIED_WINDOW_S)")
    alert_checks_count: int = Field(default=50, ge=1, le=1_000_000, description="verification checks on one "
                                    "subject (by any grantee) in one window that raise an alert to the owner "
                                    "(VEILBOX_ALERT_CHECKS_COUNT)")
    alert_checks_window_s: float = Field(default=3600.0, ge=1, le=30 * 86_400, description="its window "
                                         "(VEILBOX_ALERT_CHECKS_WINDOW_S)")
    alert_incidents_count: int = Field(default=3, ge=1, le=1_000_000, description="engine incidents (job.incident) "
                                       "on one dataset in one window that raise an alert "
                                       "(VEILBOX_ALERT_INCIDENTS_COUNT)")
    alert_incidents_window_s: float = Field(default=86_400.0, ge=1, le=30 * 86_400, description="its window "
                                            "(VEILBOX_ALERT_INCIDENTS_WINDOW_S)")
    alert_chain_every_s: float = Field(default=3600.0, ge=1, le=30 * 86_400, description="how often the job worker "
                                       "verifies the audit chain and alerts on a failure "
                                       "(VEILBOX_ALERT_CHAIN_EVERY_S)")
    alert_webhook_attempts: int = Field(default=5, ge=1, le=100, description="delivery attempts of one alert to "
                                        "one webhook before it is marked failed (VEILBOX_ALERT_WEBHOOK_ATTEMPTS)")
    alert_webhook_backoff_s: float = Field(default=30.0, ge=0, le=86_400, description="wait after the first failed "
                                           "attempt, doubled after each further one "
                                           "(VEILBOX_ALERT_WEBHOOK_BACKOFF_S)")
    alert_webhook_timeout_s: float = Field(default=5.0, gt=0, le=120, description="how long one webhook attempt "
                                           "may take (VEILBOX_ALERT_WEBHOOK_TIMEOUT_S)")
    anchor_sink: str | None = Field(default=None, description="where the signed audit head is anchored (存证) "
                                    "(VEILBOX_ANCHOR_SINK): file:/path/anchors.jsonl, or an https:// webhook of an "
                                    "evidence service (http:// only to a loopback host)")
    anchor_every_s: float = Field(default=3600.0, ge=1, le=30 * 86_400, description="how often the job worker "
                                  "anchors the signed head when it advanced (VEILBOX_ANCHOR_EVERY_S)")
    anchor_hmac_key: SecretStr | None = Field(default=None, description="key of the HMAC over each webhook anchor "
                                              "(VEILBOX_ANCHOR_HMAC_KEY, at least 32 characters)")
    audit_retention_days: int = Field(default=365, le=100 * 366, description="declared retention of the access "
                                      "audit (VEILBOX_AUDIT_RETENTION_DAYS); below six months (183) is refused")
    console_idle_minutes: int = Field(default=30, ge=1, le=24 * 60, description="console sessions end when idle")
    console_session_hours: int = Field(default=8, ge=1, le=7 * 24, description="and at the latest after this")
    # The master key wrapping every data key and service secret (gateway.masterkey; at most one kind; none: the
    # key file beside the home that `veilbox init` creates, <home>.master.key)
    master_key_file: Path | None = Field(default=None, description="a 0600 key file of 32 bytes outside the home "
                                         "(VEILBOX_MASTER_KEY_FILE; `veilbox init` creates it when missing)")
    master_key: SecretStr | None = Field(default=None, description="the base64 of 32 bytes (VEILBOX_MASTER_KEY)")
    pkcs11_module: str | None = Field(default=None, description="a PKCS#11 library holding the master key as an "
                                      "AES key (VEILBOX_PKCS11_MODULE)")
    pkcs11_token_label: str = Field(default="veilbox", description="its token (VEILBOX_PKCS11_TOKEN_LABEL)")
    pkcs11_pin: SecretStr | None = Field(default=None, description="its user PIN (VEILBOX_PKCS11_PIN)")
    pkcs11_key_label: str = Field(default="veilbox-master", description="its AES key (VEILBOX_PKCS11_KEY_LABEL)")

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'meta.db').resolve()}"

    @property
    def grade_ceilings(self) -> dict[str, Fraction | None]:
        """The ε ceilings the service sets per grade, exact (decimal text of each number), for `policies.grades`."""
        return {g: None if v is None else Fraction(str(v)) for g, v in self.grade_epsilon_ceilings.items()}

    @property
    def storage(self) -> LocalStorage:
        """The storage root (`catalog.storage`): ``VEILBOX_STORAGE_ROOT``, else the home."""
        return LocalStorage(self.storage_root if self.storage_root is not None else self.home)

    @property
    def data_dir(self) -> Path:
        """Registered datasets' copies: the storage root's ``data/`` (rows store keys relative to it)."""
        return self.storage.root / "data"

    @property
    def models_dir(self) -> Path:
        """Model weights and cards: the storage root's ``models/`` (rows store keys relative to it)."""
        return self.storage.root / "models"

    @property
    def work_dir(self) -> Path:
        """Job scratch space and outputs awaiting the owner's release (never served)."""
        return self.home / "work"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def effective_import_roots(self) -> list[Path]:
        return self.import_roots or [self.home / "import"]

    def owner_import_dirs(self, owner: str) -> list[Path]:
        """The only directories ``owner`` may register sources from: ``<root>/<owner>/`` under each import root
        (principal names are single path components: `gateway.identities.NAME_RE`). Files elsewhere — in the
        root itself, or in another owner's directory — are never read for this owner (`catalog.registry`)."""
        return [root / owner for root in self.effective_import_roots]

    @model_validator(mode="after")
    def _derive_hash_alg(self) -> Settings:
        """``hash_alg`` follows ``suite``; an explicit ``hash_alg`` alone (the deprecated alias) picks the suite."""
        given = self.model_fields_set
        by_hash = {"sha256": "intl", "sm3": "sm"}
        if "hash_alg" in given and "suite" not in given:
            self.__dict__["suite"] = by_hash[self.hash_alg]  # not marked as given: the home may still decide
        elif "hash_alg" in given and by_hash[self.hash_alg] != self.suite:
            raise UnsafeSettings(f"hash_alg={self.hash_alg} contradicts suite={self.suite} (the suite's hash is "
                                 f"{SUITE_HASH[self.suite]})")
        self.__dict__["hash_alg"] = SUITE_HASH[self.suite]
        return self

    def adopt_suite(self, suite: str) -> None:
        """Take the home's suite (`gateway.context.open_context`) without marking it as given."""
        self.__dict__["suite"] = suite
        self.__dict__["hash_alg"] = SUITE_HASH[suite]

    @property
    def suite_given(self) -> bool:
        """Whether the suite (or its deprecated alias ``hash_alg``) was set explicitly, not left to the home."""
        return bool({"suite", "hash_alg"} & self.model_fields_set)

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        home = self.home.resolve()
        for root in self.import_roots:
            r = root.resolve()
            if r == Path("/"):
                raise UnsafeSettings("VEILBOX_IMPORT_ROOTS must not include '/'")
            if home.is_relative_to(r) or r.is_relative_to(home / "data") or r.is_relative_to(home / "keys") \
                    or r.is_relative_to(self.data_dir.resolve()) or self.storage.root.resolve().is_relative_to(r):
                raise UnsafeSettings("an import root must not contain VEILBOX_HOME or the storage root, nor lie "
                                     "inside data/ or keys/")
        if self.audit_retention_days < ACCESS_AUDIT_FLOOR_DAYS:
            raise UnsafeSettings(f"VEILBOX_AUDIT_RETENTION_DAYS={self.audit_retention_days} is below the declared "
                                 f"floor of {ACCESS_AUDIT_FLOOR_DAYS} days (six months) for the access audit")
        if self.anchor_sink is not None:
            _check_anchor_sink(self.anchor_sink, self.anchor_hmac_key)
        if self.env == "production":
            if self.latency_bucket_ms == 0:
                raise UnsafeSettings("latency padding cannot be disabled in production (timing channel)")
            if self.database_url and ":memory:" in self.database_url:
                raise UnsafeSettings("an in-memory database loses the audit log; not allowed in production")
        if not _is_loopback(self.host) and not self.tls_terminated:
            raise UnsafeSettings(
                f"refusing to serve on non-loopback host {self.host!r} without TLS: "
                "put a TLS proxy in front and set VEILBOX_TLS_TERMINATED=true"
            )
        return self


def _check_anchor_sink(sink: str, key: SecretStr | None) -> None:
    """A file sink names an absolute path; a webhook is https (http only to a loopback host) and has an HMAC key."""
    if sink.startswith("file:"):
        if not Path(sink.removeprefix("file:")).is_absolute():
            raise UnsafeSettings("VEILBOX_ANCHOR_SINK=file:… must name an absolute path")
        return
    from urllib.parse import urlsplit

    u = urlsplit(sink)
    if u.scheme not in ("https", "http") or not u.hostname:
        raise UnsafeSettings("VEILBOX_ANCHOR_SINK must be file:/path or an https:// URL")
    if u.scheme == "http" and not _is_loopback(u.hostname):
        raise UnsafeSettings("an anchoring webhook must use https (plain http only to a loopback host)")
    if key is None or len(key.get_secret_value()) < 32:
        raise UnsafeSettings("an anchoring webhook needs VEILBOX_ANCHOR_HMAC_KEY of at least 32 characters")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
