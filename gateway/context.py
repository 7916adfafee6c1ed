"""The service context: settings, metadata engine, keys, audit log and the in-memory caches, opened once per
process (`open_context`, the factory of every app, CLI command and test service)."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Engine, select

from catalog.durable import sweep_temp
from catalog.fingerprint import HashAlg
from catalog.keyring import Keyring
from catalog.storage import LocalStorage, bind_data_area
from catalog.store import make_engine
from gateway import _tables as t
from gateway import identities, schema
from gateway.audit import AuditEvent, AuditLog
from gateway.caches import Caches
from gateway.keys import Keys, create_keys, import_key_files, load_keys
from gateway.legacy_outputs import import_side_files
from gateway.masterkey import open_keyring
from gateway.settings import Settings, UnsafeSettings
from vocab.actions import AuditAction
from vocab.roles import SYSTEM, Role


class AlreadyInitialised(RuntimeError):
    pass


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    keys: Keys
    keyring: Keyring  # wrapped data keys and secrets (catalog.keyring), unwrapped by the master key
    audit: AuditLog
    caches: Caches  # in-memory state of this context (gateway.caches), created by open_context
    runtime: Any = None  # gateway.services.jobs.Runtime, created on first use (query engines, job environment)

    def close(self) -> None:
        if self.runtime is not None:
            self.runtime.close()
        self.engine.dispose()


def _meta(engine: Engine, key: str) -> str | None:
    with engine.connect() as conn:
        r = conn.execute(select(t.service_meta.c.value).where(t.service_meta.c.key == key)).first()
    return r[0] if r else None


def init_home(settings: Settings) -> str:
    """Create a home (directories, keys, schema, admin principal). Returns the admin token, shown once."""
    home = settings.home
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    for d in (settings.data_dir, settings.models_dir, settings.work_dir, home / "import"):
        d.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    try:
        schema.upgrade(engine)
        if _meta(engine, "hash_alg") is not None:
            raise AlreadyInitialised(f"{home} is already initialised")
        # the master key: the configured one, else a new key file beside (never inside) the home
        keyring = open_keyring(home, engine, create=True, ms=settings)
        create_keys(keyring, settings.keys_dir, settings.suite)
        with engine.begin() as conn:
            conn.execute(t.service_meta.insert().values(key="suite", value=settings.suite))
            conn.execute(t.service_meta.insert().values(key="hash_alg", value=settings.hash_alg))
            conn.execute(t.service_meta.insert().values(key="initialised_at",
                                                        value=dt.datetime.now(dt.UTC).isoformat()))
        pepper = load_keys(keyring).token_pepper
        identities.pepper_stored_hashes(engine, pepper)  # records that every token hash of this home is peppered
        _, token = identities.create_principal(engine, "admin", Role.ADMIN, created_by=None, pepper=pepper,
                                               ttl_days=settings.token_ttl_days)
        ctx = open_context(settings, engine=engine)
        ctx.audit.append(AuditEvent(actor="system", role=SYSTEM, action=AuditAction.SERVICE_INIT,
                                    details={"suite": settings.suite, "hash_alg": settings.hash_alg}))
        ctx.audit.append(AuditEvent(actor="system", role=SYSTEM, action=AuditAction.PRINCIPAL_CREATE,
                                    details={"name": "admin", "role": Role.ADMIN}))
        return token
    finally:
        engine.dispose()


def open_context(settings: Settings, engine: Engine | None = None) -> AppContext:
    engine = engine or make_engine(settings.db_url, pool_size=settings.db_pool_size,
                                   max_overflow=settings.db_max_overflow, pool_timeout=settings.db_pool_timeout_s)
    schema.upgrade(engine)
    bind_data_area(engine, LocalStorage(settings.data_dir))  # dataset rows name their copies by key (catalog.storage)
    alg = _meta(engine, "hash_alg")
    if alg is None:
        raise RuntimeError(f"{settings.home} is not initialised: run `veilbox init`")
    # the cryptographic suite is the home's (fixed at init); a home older than the setting has its chain hash only
    suite = _meta(engine, "suite") or ("sm" if alg == "sm3" else "intl")
    if settings.suite_given and (settings.suite != suite or settings.hash_alg != alg):
        raise UnsafeSettings(f"this home uses the {suite} cryptographic suite (audit chain {alg}); the setting "
                             f"suite={settings.suite} (hash {settings.hash_alg}) disagrees: fixed at `veilbox init`")
    settings.adopt_suite(suite)
    keyring = _keyring(settings, engine)
    keys = load_keys(keyring)
    identities.pepper_stored_hashes(engine, keys.token_pepper)  # a store from before the pepper: once
    if _meta(engine, "suite") is not None and keys.suite.name != suite:
        raise UnsafeSettings(f"this home's signing key is {keys.signing.algorithm}, not of its suite {suite}")
    import_side_files(engine, settings.work_dir)  # outputs of an older home kept as files: now job_outputs rows
    audit = AuditLog(engine, keys, cast(HashAlg, alg), settings.checkpoint_every)
    sweep_temp_files(settings, audit)
    return AppContext(settings, engine, keys, keyring, audit, Caches.create(settings, keyring))


def _keyring(settings: Settings, engine: Engine) -> Keyring:
    """The home's keyring (`gateway.masterkey`: fails closed without its master key). A home made before the keys
    were wrapped has them as plaintext files in ``keys/``: they are wrapped into the store under the configured
    master key (the default key file beside the home is created for it) and deleted, once."""
    legacy = (settings.keys_dir / "audit_ed25519.pem").exists()
    keyring = open_keyring(settings.home, engine, create=legacy, ms=settings)
    if legacy:
        import_key_files(keyring, settings.keys_dir)
        create_keys(keyring, settings.keys_dir)  # what such a home lacked: the token pepper
    return keyring


def sweep_temp_files(settings: Settings, audit: AuditLog) -> list[str]:
    """Remove the temporary files crashed writers left in the home (`catalog.durable.sweep_temp`: partial ingest
    copies, model weights, PSI setups) and audit the sweep once (``files.sweep``, names relative to the home).
    Returns those names; nothing is audited when there was nothing to remove."""
    removed = sweep_temp(settings.data_dir, settings.models_dir, settings.work_dir)
    if not removed:
        return []
    home = settings.home.resolve()
    names = sorted(str(p.resolve().relative_to(home)) if p.resolve().is_relative_to(home) else p.name
                   for p in removed)
    audit.append(AuditEvent(actor="system", role=SYSTEM, action=AuditAction.FILES_SWEEP,
                            details={"removed": len(names), "files": names[:100]}))
    return names
