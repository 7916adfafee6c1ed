"""The PKCS#11 master-key provider against a real token: SoftHSM2 (`make softhsm`; skipped without it outside CI)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from catalog import _tables
from catalog.keyring import EnvProvider, Keyring, MasterKeyError, Pkcs11Provider
from catalog.store import make_engine

MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
           "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so")
PIN = "1234"


@pytest.fixture(scope="module")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh SoftHSM2 token labelled ``veilbox`` (user PIN 1234) in a directory of this module's own."""
    module = next((m for m in MODULES if Path(m).exists()), None)
    util = shutil.which("softhsm2-util")
    try:
        import pkcs11  # noqa: F401
    except ImportError:
        module = None
    if module is None or util is None:
        if os.environ.get("CI"):
            pytest.fail("SoftHSM2 and python-pkcs11 are required in CI (make softhsm)")
        pytest.skip("SoftHSM2 or python-pkcs11 not installed (make softhsm)")
    d = tmp_path_factory.mktemp("softhsm")
    (d / "tokens").mkdir()
    conf = d / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {d / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    mp = pytest.MonkeyPatch()
    mp.setenv("SOFTHSM2_CONF", str(conf))
    subprocess.run([util, "--init-token", "--free", "--label", "veilbox", "--so-pin", "5678", "--pin", PIN],
                   check=True, capture_output=True)
    yield module
    mp.undo()


def test_token_key_wraps_and_unwraps_inside_the_token(softhsm: str, tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError) as e:
        Pkcs11Provider(softhsm, "veilbox", PIN, key_label="absent")  # no key, none created
    assert e.value.reason == "master_key.missing"
    with pytest.raises(MasterKeyError) as e:
        Pkcs11Provider(softhsm, "veilbox", "0000")
    assert e.value.reason == "master_key.unavailable"
    p = Pkcs11Provider(softhsm, "veilbox", PIN, key_label="master-1", create=True)
    key = os.urandom(32)
    blob = p.wrap("dataset:a", key)
    assert key not in blob and p.unwrap("dataset:a", blob) == key and p.describe() == "pkcs11:veilbox/master-1"
    with pytest.raises(MasterKeyError):
        p.unwrap("dataset:b", blob)  # bound to its object id
    other = Pkcs11Provider(softhsm, "veilbox", PIN, key_label="master-2", create=True)
    with pytest.raises(MasterKeyError):
        other.unwrap("dataset:a", blob)
    import pkcs11

    token = pkcs11.lib(softhsm).get_token(token_label="veilbox")
    with token.open(user_pin=PIN) as s:
        k = s.get_key(label="master-1", key_type=pkcs11.KeyType.AES, object_class=pkcs11.ObjectClass.SECRET_KEY)
        assert k[pkcs11.Attribute.SENSITIVE] and not k[pkcs11.Attribute.EXTRACTABLE]  # never leaves the token

    # rotation into the token and out of it: the keyring's keys survive, the previous master key is not needed
    engine = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    _tables.metadata.create_all(engine)
    env = EnvProvider("A" * 43 + "=")
    ring = Keyring(engine, env)
    a = ring.new_data_key("dataset:a")
    assert ring.rewrap_all(p) == 1
    assert Keyring(engine, Pkcs11Provider(softhsm, "veilbox", PIN, key_label="master-1")).data_key("dataset:a") == a
    with pytest.raises(MasterKeyError):
        Keyring(engine, env).data_key("dataset:a")
