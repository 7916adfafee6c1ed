"""The cryptographic suite is fixed at init (docs/crypto.md "Suites"): a home made with ``suite=sm`` signs with SM2,
chains with SM3 and hashes subjects with HMAC-SM3; a gateway whose explicit setting disagrees refuses to start;
``hash_alg`` is derived (its explicit use is the deprecated alias of the suite)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from catalog.fingerprint import digest
from cryptosuite import suite_of
from gateway import identities
from gateway.console import sessions
from gateway.console._web import session_store
from gateway.context import init_home, open_context
from gateway.settings import Settings, UnsafeSettings


def test_hash_alg_is_derived_from_the_suite_and_remains_an_alias():
    assert (Settings().suite, Settings().hash_alg) == ("intl", "sha256")
    assert Settings(suite="sm").hash_alg == "sm3"
    assert Settings(hash_alg="sm3").suite == "sm"  # the deprecated spelling of --suite sm
    with pytest.raises(ValidationError, match="contradicts"):
        Settings(suite="intl", hash_alg="sm3")


def test_an_sm_home_uses_sm_everywhere_and_refuses_a_disagreeing_gateway(tmp_path):
    home = tmp_path / "home"
    admin_token = init_home(Settings(home=home, suite="sm", env="test"))
    with pytest.raises(UnsafeSettings, match="sm cryptographic suite"):
        open_context(Settings(home=home, suite="intl", env="test"))
    settings = Settings(home=home, env="test")  # no setting: the home decides
    ctx = open_context(settings)
    try:
        sm = suite_of("sm")
        assert (settings.suite, settings.hash_alg, ctx.audit.alg) == ("sm", "sm3", "sm3")
        assert ctx.keys.public.algorithm == "sm2" and ctx.keys.key_id.startswith("sm2:")
        assert ctx.keys.subject_hash("P1") == "hs:" + sm.hmac_hex(ctx.keys.subject_key, b"P1")[:32]
        first = ctx.audit.entries(limit=1)[0][0]
        assert first["details"].find('"suite":"sm"') >= 0
        assert ctx.audit.verify().ok and ctx.audit.verify(public_key=ctx.keys.public.pem).ok
        assert not ctx.audit.verify(public_key=suite_of("intl").new_signing_key().public).ok
        assert session_store(ctx).suite is sm and sessions._hash("cookie", sm) == sm.hexdigest(b"cookie")
        assert settings.hash_alg == "sm3" and digest(b"x", settings.hash_alg).startswith("sm3:")  # fingerprints
        # bearer tokens are stored as HMAC-SM3 under the pepper of their SM3 hash, and the admin's still works
        pepper = ctx.keys.token_pepper
        assert identities.hash_token("vbx_t", pepper) == sm.hmac_hex(bytes(pepper), sm.hexdigest(b"vbx_t").encode())
        assert identities.authenticate(ctx.engine, admin_token, pepper=pepper) is not None
    finally:
        ctx.close()


def test_intl_token_hashes_are_unchanged():
    """An intl home's stored token hashes stay HMAC-SHA256 under the pepper of the token's SHA-256 (bit-exact)."""
    import hashlib
    import hmac

    from gateway.keys import Keys

    pepper = Keys.generate("intl").token_pepper
    want = hmac.new(bytes(pepper), hashlib.sha256(b"vbx_t").hexdigest().encode(), hashlib.sha256).hexdigest()
    assert identities.hash_token("vbx_t", pepper) == want == identities.hash_token("vbx_t", bytes(pepper))
