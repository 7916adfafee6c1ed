"""A master key's fingerprint is the home suite's HMAC: HMAC-SHA-256 in intl (unchanged), HMAC-SM3 in sm."""

from __future__ import annotations

import base64
import hashlib
import hmac

from catalog.keyring import EnvProvider, fingerprint
from cryptosuite import suite_of

_MASTER = bytes(range(32))
_LABEL = b"veilbox master key fingerprint"


def test_intl_fingerprint_is_bit_exact_and_sm_uses_hmac_sm3() -> None:
    assert fingerprint(_MASTER) == hmac.new(_MASTER, _LABEL, hashlib.sha256).hexdigest()[:16]
    assert fingerprint(_MASTER, "intl") == fingerprint(_MASTER)
    assert fingerprint(_MASTER, "sm") == suite_of("sm").hmac_hex(_MASTER, _LABEL)[:16] != fingerprint(_MASTER)


def test_a_provider_names_its_key_by_its_home_suite() -> None:
    p = EnvProvider(base64.b64encode(_MASTER).decode())
    assert p.describe() == f"env:VEILBOX_MASTER_KEY fp={fingerprint(_MASTER)}"
    p.use_suite("sm")
    assert p.describe() == f"env:VEILBOX_MASTER_KEY fp={fingerprint(_MASTER, 'sm')}"
