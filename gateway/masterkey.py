"""Which master key a home's keys are wrapped by, from the environment: the provider a process opens the keyring with.

Settings (environment, prefix ``VEILBOX_``; at most one of the three kinds):

- ``VEILBOX_MASTER_KEY_FILE``: a key file of 32 bytes outside the home, mode 0600 (`catalog.keyring.FileProvider`).
- ``VEILBOX_MASTER_KEY``: the base64 of 32 bytes (`catalog.keyring.EnvProvider`).
- ``VEILBOX_PKCS11_MODULE`` (the PKCS#11 library), ``VEILBOX_PKCS11_TOKEN_LABEL`` (``veilbox``),
  ``VEILBOX_PKCS11_PIN``, ``VEILBOX_PKCS11_KEY_LABEL`` (``veilbox-master``): an AES key in a token
  (`catalog.keyring.Pkcs11Provider`).

With none of them set, the master key is the file `catalog.keyring.default_key_file` names: ``<home>.master.key``
*beside* the home (``./.veilbox.master.key`` for ``./.veilbox``), which `veilbox init` creates (mode 0600). So
`make demo` and a home on a laptop work with no configuration, and a copy of the home alone carries no key.
Production names its master key explicitly (docs/deploy.md, "Key handling").

A process that finds no master key, or one that does not unwrap the home's keys, refuses to start with a
`catalog.keyring.MasterKeyError` naming the reason (``master_key.missing``, ``master_key.wrong``,
``master_key.unsafe``, ``master_key.unavailable``) and what to set: it fails closed, never with fresh keys.

Rotation (`veilbox keys rotate`: `new_provider`, `rotate`) re-wraps every key under a new master key in one
transaction, audited (``keys.rotate``); no data is re-encrypted and the old master key is no longer needed.
`destroy_data_key` crypto-shreds one object (``keys.destroy``); `status` is what `veilbox keys status` prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Connection, Engine

from catalog.keyring import (
    EnvProvider,
    FileProvider,
    Keyring,
    MasterKeyError,
    MasterKeyProvider,
    Pkcs11Provider,
    create_key_file,
    default_key_file,
)
from gateway.audit import AuditEvent
from vocab.actions import AuditAction
from vocab.roles import SYSTEM

if TYPE_CHECKING:
    from gateway.context import AppContext
    from gateway.settings import Settings

__all__ = [
    "HOW_TO", "MasterKeySettings", "destroy_data_key", "new_provider", "open_keyring", "provider", "rotate", "status",
]

HOW_TO = ("set VEILBOX_MASTER_KEY_FILE (a 0600 key file outside the home), VEILBOX_MASTER_KEY (base64 of 32 "
          "bytes) or VEILBOX_PKCS11_MODULE (with VEILBOX_PKCS11_TOKEN_LABEL, VEILBOX_PKCS11_PIN, "
          "VEILBOX_PKCS11_KEY_LABEL) to the master key this home's keys are wrapped by")


class MasterKeySettings(BaseSettings):
    """Where the master key is (module docstring), from the environment: the same fields as
    `gateway.settings.Settings`' (which a service passes instead), for callers without a Settings."""

    model_config = SettingsConfigDict(env_prefix="VEILBOX_", extra="ignore")

    master_key_file: Path | None = None
    master_key: SecretStr | None = None
    pkcs11_module: str | None = None
    pkcs11_token_label: str = "veilbox"  # noqa: S105 - a label, not a secret
    pkcs11_pin: SecretStr | None = None
    pkcs11_key_label: str = "veilbox-master"


def provider(home: Path, ms: MasterKeySettings | Settings | None = None, create: bool = False) -> MasterKeyProvider:
    """The master-key provider configured for ``home``. ``create`` (`veilbox init`, `veilbox keys rotate`) makes
    the default key file beside the home, or the token's AES key, when there is none; otherwise a missing key is
    `MasterKeyError` (``master_key.missing``)."""
    ms = ms or MasterKeySettings()
    chosen = [n for n, v in (("VEILBOX_MASTER_KEY_FILE", ms.master_key_file), ("VEILBOX_MASTER_KEY", ms.master_key),
                             ("VEILBOX_PKCS11_MODULE", ms.pkcs11_module)) if v]
    if len(chosen) > 1:
        raise MasterKeyError("master_key.unsafe", f"set only one master key, not {' and '.join(chosen)}")
    if ms.pkcs11_module:
        pin = ms.pkcs11_pin.get_secret_value() if ms.pkcs11_pin else ""
        return Pkcs11Provider(ms.pkcs11_module, ms.pkcs11_token_label, pin, ms.pkcs11_key_label, create=create)
    if ms.master_key is not None:
        return EnvProvider(ms.master_key.get_secret_value())
    path = ms.master_key_file or default_key_file(home)
    if create and not path.exists():
        create_key_file(path, home)
    try:
        return FileProvider(path, home)
    except MasterKeyError as e:
        if e.reason != "master_key.missing":
            raise
        where = "VEILBOX_MASTER_KEY_FILE names" if ms.master_key_file else "the default master key file would be"
        raise MasterKeyError("master_key.missing", f"no master key for {home}: {where} {path}, which does not "
                             f"exist; {HOW_TO}") from None


def open_keyring(home: Path, engine: Engine, create: bool = False,
                 ms: MasterKeySettings | Settings | None = None) -> Keyring:
    """The home's keyring, its provider (``ms``: the service's settings, else the environment) checked against the
    keys it holds: a master key that does not unwrap them is `MasterKeyError` (``master_key.wrong``) naming the
    master key they are wrapped by."""
    p = provider(home, ms, create=create)
    suite = getattr(ms, "suite", None)
    if suite is not None and hasattr(p, "use_suite"):
        p.use_suite(suite)  # file and environment keys wrap with the home's suite's AEAD
    keyring = Keyring(engine, p)
    status = keyring.status()
    if status["wrapped_keys"]:
        try:
            keyring.secret("audit-signing")
        except MasterKeyError as e:
            raise MasterKeyError("master_key.wrong", f"the configured master key ({status['provider']}) does not "
                                 f"unwrap this home's keys, wrapped by {', '.join(status['wrapped_by'])}; "
                                 f"{HOW_TO}") from e
    return keyring


def new_provider(home: Path, *, to_file: Path | None = None, to_env: str | None = None,
                 to_pkcs11: str | None = None, token_label: str = "veilbox", pin: str = "",  # noqa: S107
                 key_label: str = "veilbox-master") -> MasterKeyProvider:
    """The master key to rotate to (exactly one kind): a key file outside the home (created, mode 0600, when it
    does not exist), the base64 value of a new environment key, or a PKCS#11 token's AES key (generated in the
    token when it has none under ``key_label``)."""
    if sum(x is not None for x in (to_file, to_env, to_pkcs11)) != 1:
        raise ValueError("name exactly one new master key")
    if to_file is not None:
        if not to_file.exists():
            create_key_file(to_file, home)
        return FileProvider(to_file, home)
    if to_env is not None:
        return EnvProvider(to_env)
    assert to_pkcs11 is not None
    return Pkcs11Provider(to_pkcs11, token_label, pin, key_label, create=True)


def rotate(ctx: AppContext, new: MasterKeyProvider, actor: str = "system") -> dict[str, Any]:
    """Re-wrap every key of ``ctx``'s home under ``new`` (`catalog.keyring.Keyring.rewrap_all`: one transaction,
    no data re-encrypted), audited as ``keys.rotate`` in that transaction. Afterwards only ``new`` opens the home:
    set it for every process and restart them; the old master key is no longer needed."""
    old, count = ctx.keyring.provider.describe(), ctx.keyring.count()
    if hasattr(new, "use_suite"):
        new.use_suite(getattr(ctx.keyring.provider, "suite", None) or ctx.settings.suite)
    if new.describe() == old:
        raise MasterKeyError("master_key.unsafe", "the new master key is the current one")

    def journal(conn: Connection) -> None:
        ctx.audit.append_in(conn, AuditEvent(actor=actor, role=SYSTEM, action=AuditAction.KEYS_ROTATE,
                                             details={"from": old, "to": new.describe(), "keys": count}))

    n = ctx.keyring.rewrap_all(new, journal=journal)
    return {"from": old, "to": new.describe(), "rewrapped": n}


def destroy_data_key(ctx: AppContext, object_id: str, actor: str, role: str, dataset: str | None = None) -> bool:
    """Crypto-shred ``object_id``: delete its wrapped data key, audited as ``keys.destroy`` in the same transaction
    (``dataset`` names the dataset it protected, so its owner reads the entry). Returns whether it had a key."""

    def journal(conn: Connection) -> None:
        ctx.audit.append_in(conn, AuditEvent(actor=actor, role=role, action=AuditAction.KEY_DESTROY,
                                             dataset=dataset, details={"object": object_id}))

    return ctx.keyring.destroy(object_id, journal=journal)


def status(ctx: AppContext) -> dict[str, Any]:
    """The provider, how many keys it wraps (by kind) and which providers wrapped them; never a key."""
    return ctx.keyring.status()
