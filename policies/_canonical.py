"""Canonical JSON and its digest: the bytes an approval or a document hash is bound to.

Digests are the home suite's hash (``catalog.fingerprint.digest``): ``sha256:<hex>`` in an ``intl`` home (the
default), ``sm3:<hex>`` in an ``sm`` home; callers pass the home's ``hash_alg``.
"""

from __future__ import annotations

import json
from typing import Any

from catalog.fingerprint import HashAlg, digest

MAX_SPEC_BYTES = 1 << 20


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8, no NaN/Infinity: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def text_digest(text: str, alg: HashAlg = "sha256") -> str:
    """``"<alg>:<hex>"`` of ``text`` as UTF-8 (``sha256:`` or ``sm3:``, the home's suite)."""
    return digest(text.encode("utf-8"), alg)


def sha256_digest(text: str) -> str:
    """``"sha256:<hex>"`` of ``text``: the ``intl`` suite's `text_digest`."""
    return text_digest(text, "sha256")


def json_digest(value: Any, alg: HashAlg = "sha256") -> str:
    """``"<alg>:<hex>"`` of the canonical JSON of ``value``."""
    return text_digest(canonical_json(value), alg)
