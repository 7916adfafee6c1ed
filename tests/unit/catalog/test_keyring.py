"""Master-key providers and the keyring: refusals, wrap/unwrap, rotation without the old key, crypto-shredding."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from catalog import _tables
from catalog.errors import DomainError
from catalog.keyring import (
    DataKeyDestroyed,
    EnvProvider,
    FileProvider,
    Keyring,
    MasterKeyError,
    create_key_file,
    default_key_file,
)
from catalog.store import make_engine


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    engine = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    _tables.metadata.create_all(engine)
    home = tmp_path / "home"
    home.mkdir()
    return Keyring(engine, FileProvider(create_key_file(default_key_file(home), home), home))


def _env() -> EnvProvider:
    return EnvProvider(base64.b64encode(os.urandom(32)).decode())


def test_key_file_refused_inside_the_home_or_readable_by_others(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "keys").mkdir(parents=True)
    with pytest.raises(MasterKeyError) as e:
        create_key_file(home / "keys" / "master.key", home)
    assert e.value.reason == "master_key.unsafe" and not (home / "keys" / "master.key").exists()
    inside = home / "master.key"
    inside.write_bytes(os.urandom(32))
    inside.chmod(0o600)
    with pytest.raises(MasterKeyError, match="inside VEILBOX_HOME"):
        FileProvider(inside, home)
    link = tmp_path / "link.key"  # a link from outside into the home is inside
    link.symlink_to(inside)
    with pytest.raises(MasterKeyError, match="inside VEILBOX_HOME"):
        FileProvider(link, home)
    outside = create_key_file(default_key_file(home), home)
    assert outside.parent == tmp_path and (outside.stat().st_mode & 0o777) == 0o600
    for mode in (0o640, 0o604):
        outside.chmod(mode)
        with pytest.raises(MasterKeyError) as e:
            FileProvider(outside, home)
        assert e.value.reason == "master_key.unsafe"
    outside.chmod(0o600)
    FileProvider(outside, home)
    with pytest.raises(MasterKeyError) as e:
        FileProvider(tmp_path / "absent.key", home)
    assert e.value.reason == "master_key.missing"
    with pytest.raises(FileExistsError):
        create_key_file(outside, home)  # never over an existing key


def test_env_provider_and_binding_to_the_key_id() -> None:
    for bad in ("not base64!", base64.b64encode(os.urandom(16)).decode()):
        with pytest.raises(MasterKeyError):
            EnvProvider(bad)
    p = _env()
    key = os.urandom(32)
    blob = p.wrap("dataset:a", key)
    assert key not in blob and p.unwrap("dataset:a", blob) == key
    with pytest.raises(MasterKeyError) as e:
        p.unwrap("dataset:b", blob)  # moved to another object: refused
    assert e.value.reason == "master_key.wrong"
    with pytest.raises(MasterKeyError):
        _env().unwrap("dataset:a", blob)  # another master key
    assert "fp=" in p.describe() and base64.b64encode(p._master).decode() not in p.describe()


def test_data_keys_rotation_and_destruction(keyring: Keyring) -> None:
    a = keyring.new_data_key("dataset:a")
    b = keyring.data_key_or_new("model:b")
    keyring.put_secret("signing", b"s" * 40)
    assert len(a) == 32 and a != b and keyring.data_key("dataset:a") == a and keyring.data_key_or_new("model:b") == b
    with pytest.raises(DomainError):
        keyring.new_data_key("dataset:a")  # never replaced
    with pytest.raises(ValueError):
        keyring.new_data_key("secret:signing")
    old = keyring.provider
    new = _env()
    assert keyring.rewrap_all(new) == 3
    fresh = Keyring(keyring.engine, new)  # the old master key is no longer needed
    assert fresh.data_key("dataset:a") == a and fresh.data_key("model:b") == b and fresh.secret("signing") == b"s" * 40
    with pytest.raises(MasterKeyError):
        Keyring(keyring.engine, old).data_key("dataset:a")
    status = fresh.status()
    assert status["wrapped_keys"] == 3 and status["by_kind"] == {"dataset": 1, "model": 1, "secret": 1}
    assert status["wrapped_by"] == [new.describe()]
    entries: list[str] = []
    assert fresh.destroy("dataset:a", journal=lambda conn: entries.append("destroyed"))
    assert entries == ["destroyed"] and not fresh.exists("dataset:a")
    with pytest.raises(DataKeyDestroyed):
        fresh.data_key("dataset:a")
    assert not fresh.destroy("dataset:a") and fresh.count() == 2


def test_failed_rotation_changes_nothing(keyring: Keyring) -> None:
    a = keyring.new_data_key("dataset:a")
    with keyring.engine.begin() as conn:  # a row the current master key cannot unwrap
        conn.execute(
            _tables.metadata.tables["data_keys"]
            .update()
            .where(_tables.metadata.tables["data_keys"].c.object_id == "dataset:a")
            .values(wrapped=_env().wrap("dataset:a", a))
        )
    keyring.new_data_key("dataset:b")
    new = _env()
    with pytest.raises(MasterKeyError):
        keyring.rewrap_all(new)
    with pytest.raises(MasterKeyError):
        Keyring(keyring.engine, new).data_key("dataset:b")
    keyring.data_key("dataset:b")


def test_sm_homes_wrap_with_sm4_gcm_and_older_wraps_still_open() -> None:
    p = _env()
    key = os.urandom(32)
    intl = p.wrap("dataset:a", key)
    p.use_suite("sm")
    sm = p.wrap("dataset:a", key)
    assert intl[:1] == b"\x01" and sm[:1] == b"\x03" and key not in sm
    assert p.unwrap("dataset:a", sm) == key == p.unwrap("dataset:a", intl)
    with pytest.raises(MasterKeyError):
        p.unwrap("dataset:b", sm)
    other = _env()
    other.use_suite("sm")
    with pytest.raises(MasterKeyError):
        other.unwrap("dataset:a", sm)
