"""Content fingerprints of registered data: SHA-256 (default) or SM3, both through OpenSSL (`cryptography`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import hashes

HashAlg = Literal["sha256", "sm3"]
_ALGS: dict[str, type[hashes.HashAlgorithm]] = {"sha256": hashes.SHA256, "sm3": hashes.SM3}


def hasher(alg: HashAlg) -> hashes.Hash:
    try:
        return hashes.Hash(_ALGS[alg]())
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
