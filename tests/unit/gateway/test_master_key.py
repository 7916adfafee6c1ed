"""The master key kept apart from the home: a stolen home yields no key, a home without its master key (or with
another one) refuses to open, rotation needs no old key afterwards, destruction crypto-shreds, all audited; a home
from before the keys were wrapped is imported once."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import delete, update

from catalog.keyring import DataKeyDestroyed, EnvProvider, MasterKeyError, data_keys, default_key_file
from gateway import _tables as t
from gateway import identities, masterkey
from gateway.context import init_home, open_context
from gateway.keys import SIGNING_KEY, SUBJECT_KEY, _save_signing
from gateway.settings import Settings


def _settings(tmp_path: Path, database_url: str | None = None, name: str = "home") -> Settings:
    return Settings(home=tmp_path / name, env="test", latency_bucket_ms=0, database_url=database_url)


@pytest.fixture(autouse=True)
def _no_configured_master_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("VEILBOX_MASTER_KEY", "VEILBOX_MASTER_KEY_FILE", "VEILBOX_PKCS11_MODULE"):
        monkeypatch.delenv(var, raising=False)


def _forms(secret: bytes) -> list[bytes]:
    return [secret, secret.hex().encode(), base64.b64encode(secret), base64.urlsafe_b64encode(secret)]


def test_a_copy_of_the_home_without_its_master_key_yields_no_key(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    s = _settings(tmp_path)
    init_home(s)
    assert default_key_file(s.home).exists() and not default_key_file(s.home).is_relative_to(s.home.resolve())
    ctx = open_context(s)
    signing = _save_signing(ctx.keys.signing)
    secrets = {"signing key": signing, "signing key (raw)": signing[-32:], "subject key": ctx.keys.subject_key,
               "token pepper": ctx.keys.token_pepper, "data key": ctx.keyring.new_data_key("dataset:tax_income"),
               "PSI secret": ctx.caches.psi_setups._master()}
    ctx.close()
    stolen = tmp_path / "stolen" / "home"
    shutil.copytree(s.home, stolen)
    files = [p for p in stolen.rglob("*") if p.is_file()]
    assert files and not any("master" in p.name and p.suffix == ".key" for p in files)
    for path in files:
        blob = path.read_bytes()
        for what, secret in secrets.items():
            assert not any(form in blob for form in _forms(secret)), f"{what} readable in {path}"
    with pytest.raises(MasterKeyError) as e:
        open_context(_settings(tmp_path / "stolen"))
    assert e.value.reason == "master_key.missing" and "VEILBOX_MASTER_KEY_FILE" in str(e.value)
    monkeypatch.setenv("VEILBOX_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(MasterKeyError) as e:
        open_context(_settings(tmp_path / "stolen"))  # another master key does not help either
    assert e.value.reason == "master_key.wrong"


def test_a_key_file_inside_the_home_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEILBOX_MASTER_KEY_FILE", str(tmp_path / "home" / "keys" / "master.key"))
    s = _settings(tmp_path)
    with pytest.raises(MasterKeyError) as e:
        init_home(s)
    assert e.value.reason == "master_key.unsafe"
    assert not (s.home / "keys" / "master.key").exists()


def test_rotation_and_destruction_are_audited(tmp_path: Path, database_url: str | None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    s = _settings(tmp_path, database_url)
    init_home(s)
    ctx = open_context(s)
    key = ctx.keyring.new_data_key("dataset:tax_income")
    new = base64.b64encode(os.urandom(32)).decode()
    done = masterkey.rotate(ctx, EnvProvider(new))
    assert done["rewrapped"] == ctx.keyring.count() >= 4 and done["to"] == EnvProvider(new).describe()
    ctx.close()
    default_key_file(s.home).unlink()  # the old master key is gone: not needed any more
    with pytest.raises(MasterKeyError):
        open_context(s)
    monkeypatch.setenv("VEILBOX_MASTER_KEY", new)
    ctx = open_context(_settings(tmp_path, database_url))  # the settings read the new key from the environment
    try:
        assert ctx.keyring.data_key("dataset:tax_income") == key
        assert masterkey.status(ctx)["wrapped_by"] == [EnvProvider(new).describe()]
        assert masterkey.destroy_data_key(ctx, "dataset:tax_income", actor="city-tax", role="owner",
                                          dataset="tax_income")
        with pytest.raises(DataKeyDestroyed):
            ctx.keyring.data_key("dataset:tax_income")
        entries = {e["action"]: e for e in ctx.audit.iter_all()}
        assert json.loads(entries["keys.rotate"]["details"])["to"] == EnvProvider(new).describe()
        assert entries["keys.destroy"]["dataset"] == "tax_income"
        assert new not in str(entries["keys.rotate"])
        assert ctx.audit.verify().ok
    finally:
        ctx.close()


def test_a_home_from_before_wrapping_is_imported_once(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    token = init_home(s)
    ctx = open_context(s)
    key_id, subject = ctx.keys.key_id, ctx.keys.subject_key
    pem = serialization.load_der_private_key(_save_signing(ctx.keys.signing), password=None).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with ctx.engine.begin() as conn:  # as an older home kept it: key files, no wrapped secrets, plain token hashes
        conn.execute(delete(data_keys))
        conn.execute(update(t.principals).values(token_hash=hashlib.sha256(token.encode()).hexdigest()))
        conn.execute(delete(t.service_meta).where(t.service_meta.c.key == identities.HASH_SCHEME_KEY))
    ctx.close()
    (s.keys_dir / SIGNING_KEY).write_bytes(pem)
    (s.keys_dir / SUBJECT_KEY).write_bytes(subject)
    default_key_file(s.home).unlink()
    ctx = open_context(s)
    try:
        assert (ctx.keys.key_id, ctx.keys.subject_key) == (key_id, subject)
        assert identities.authenticate(ctx.engine, token, pepper=ctx.keys.token_pepper) is not None
        assert not (s.keys_dir / SIGNING_KEY).exists() and not (s.keys_dir / SUBJECT_KEY).exists()
        assert default_key_file(s.home).exists()
        assert identities.pepper_stored_hashes(ctx.engine, ctx.keys.token_pepper) == 0  # once
    finally:
        ctx.close()


def test_an_sm_home_wraps_its_keys_with_sm4_gcm(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "home", env="test", latency_bucket_ms=0, suite="sm")
    init_home(s)
    ctx = open_context(s)
    try:
        with ctx.engine.connect() as conn:
            blobs = [bytes(r[0]) for r in conn.execute(data_keys.select().with_only_columns(data_keys.c.wrapped))]
        assert blobs and all(b[:1] == b"\x03" for b in blobs)  # catalog.keyring: SM4-GCM wraps
        assert ctx.keys.signing.algorithm == "sm2"
    finally:
        ctx.close()
