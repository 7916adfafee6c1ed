"""Content fingerprints of registered data with the hash of the home's cryptographic suite (`cryptosuite`):
``sha256:`` (intl) or ``sm3:`` (sm), both through OpenSSL (`cryptography`). The gateway passes the home's
``hash_alg`` (`gateway.settings.Settings.hash_alg`, derived from the suite)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import hashes

from cryptosuite import suite_of

HashAlg = Literal["sha256", "sm3"]
_SUITE_OF: dict[str, str] = {"sha256": "intl", "sm3": "sm"}


def hasher(alg: HashAlg) -> hashes.Hash:
    """An incremental hash of the suite whose hash is ``alg``."""
    try:
        return suite_of(_SUITE_OF[alg]).hasher()
    except KeyError:
        raise ValueError(f"unknown hash algorithm {alg!r}") from None


def digest(data: bytes, alg: HashAlg = "sha256") -> str:
    """``"<alg>:<hex>"`` of ``data``."""
    h = hasher(alg)
    h.update(data)
    return f"{alg}:{h.finalize().hex()}"


def file_fingerprint(path: Path, alg: HashAlg = "sha256", chunk: int = 1 << 20) -> str:
    """``"<alg>:<hex>"`` of a file's bytes, streamed."""
    h = hasher(alg)
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return f"{alg}:{h.finalize().hex()}"
