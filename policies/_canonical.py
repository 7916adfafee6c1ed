"""Canonical JSON and its digest: the bytes an approval or a document hash is bound to."""

from __future__ import annotations

import hashlib
import json
from typing import Any

MAX_SPEC_BYTES = 1 << 20


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8, no NaN/Infinity: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def json_digest(value: Any) -> str:
    """``"sha256:<hex>"`` of the canonical JSON of ``value``."""
    return sha256_digest(canonical_json(value))
