"""A narrow bridge to Microsoft SEAL below TenSEAL, for the three things TenSEAL's Python API cannot do.

1. **Read the parameters exactly.** TenSEAL does not expose the coefficient-modulus primes or the plain
   modulus to Python. SEAL can save its ``EncryptionParameters``; the SEAL bindings shipped inside the
   same TenSEAL wheel (``tenseal.sealapi``) load them back and return every prime, the plain modulus, and
   SEAL's own verdict on the HomomorphicEncryption.org 128-bit table (``SEALContext(parms, …, TC128)``).
2. **Encode complex CKKS plaintexts.** TenSEAL encodes real vectors only, which fills half of the
   polynomial space. Noise flooding must cover all of it, so the flood is encoded from complex slots with
   ``sealapi.CKKSEncoder`` and then encrypted with the bank's public key through TenSEAL's own encryptor.
3. **Build a BFV ciphertext with a chosen raw noise polynomial.** SEAL offers no operation that adds an
   unscaled polynomial to a BFV ciphertext, so the flood ``(e, 0)`` is written directly in SEAL's
   uncompressed ciphertext format (header copied from a ciphertext SEAL itself saved) and loaded back
   through SEAL, which validates it against the context.

4. **(Bank side) Generate only the rotation keys scoring needs.** TenSEAL generates every Galois key
   (~35 MB at N=8192); `rotation_keys` makes just the power-of-two rotations the row layout uses.

The two binding modules do not share object types, so objects cross as SEAL's own serialisation through a
private scratch directory (mode 0700, on ``/dev/shm`` when available) that is removed after each call.
Only `rotation_keys`, which runs at the bank, ever handles a secret key; nothing on the server does.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tenseal as ts
import tenseal.sealapi as sealapi
from numpy.typing import NDArray

_SHM = Path("/dev/shm")  # noqa: S108 - only a parent for mkdtemp (0700, random name)
_SEAL_MAGIC = b"\x5e\xa1"
_HEADER_SIZE = 16
_COMPR_NONE = 0


@contextmanager
def scratch() -> Iterator[Path]:
    """A private directory for SEAL's path-based save/load, removed on exit."""
    base = str(_SHM) if _SHM.is_dir() and os.access(_SHM, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="veilbox-he-", dir=base) as name:
        yield Path(name)


@dataclass(frozen=True)
class SealParameters:
    """What SEAL itself says about a context's encryption parameters."""

    scheme: str
    poly_modulus_degree: int
    primes: tuple[int, ...]
    plain_modulus: int | None
    compliant_128: bool
    error: str


def scheme_of(context: ts.Context) -> str:
    """``"ckks"``, ``"bfv"`` or ``"none"``: the scheme SEAL reports for the context's parameters."""
    return str(context.data.seal_context().key_context_data().parms().scheme().name).lower()


def _load_parms(context: ts.Context, tmp: Path) -> Any:
    """The context's encryption parameters, saved by TenSEAL's SEAL and loaded into ``tenseal.sealapi``."""
    path = str(tmp / "parms")
    context.data.seal_context().key_context_data().parms().save(path)
    loaded = sealapi.EncryptionParameters(
        sealapi.SCHEME_TYPE.CKKS if scheme_of(context) == "ckks" else sealapi.SCHEME_TYPE.BFV)
    loaded.load(path)
    return loaded


def _seal_context(context: ts.Context, tmp: Path) -> Any:
    """A ``tenseal.sealapi`` SEAL context for the same parameters, checked at the 128-bit level."""
    return sealapi.SEALContext(_load_parms(context, tmp), True, sealapi.SEC_LEVEL_TYPE.TC128)


def read_parameters(context: ts.Context) -> SealParameters:
    """Read the key-level parameters of a TenSEAL context through SEAL's own serialisation."""
    scheme_name = scheme_of(context)
    if scheme_name not in ("ckks", "bfv"):
        raise ValueError("unsupported scheme")
    with scratch() as tmp:
        loaded = _load_parms(context, tmp)
    checked = sealapi.SEALContext(loaded, True, sealapi.SEC_LEVEL_TYPE.TC128)
    return SealParameters(
        scheme=scheme_name,
        poly_modulus_degree=int(loaded.poly_modulus_degree()),
        primes=tuple(int(m.value()) for m in loaded.coeff_modulus()),
        plain_modulus=int(loaded.plain_modulus().value()) if scheme_name == "bfv" else None,
        compliant_128=bool(checked.parameters_set()),
        error=str(checked.parameters_error_name()),
    )


def rotation_keys(context: ts.Context, galois_elements: Sequence[int]) -> bytes:
    """SEAL bytes of Galois keys for exactly ``galois_elements``, made with the bank's own secret key."""
    with scratch() as tmp:
        seal_context = _seal_context(context, tmp)
        path = str(tmp / "key")
        context.secret_key().data.save(path)
        secret = sealapi.SecretKey()
        secret.load(seal_context, path)
        keys = sealapi.GaloisKeys()
        sealapi.KeyGenerator(seal_context, secret).create_galois_keys(list(galois_elements), keys)
        keys.save(path)
        return Path(path).read_bytes()


class CkksEncoder:
    """SEAL's CKKS encoder for one parameter set (complex slots), bound to a TenSEAL public context."""

    def __init__(self, context: ts.Context) -> None:
        with scratch() as tmp:
            self._seal_context = _seal_context(context, tmp)
        self._context = context
        self._encoder = sealapi.CKKSEncoder(self._seal_context)

    def encrypt_complex(self, slots: NDArray[np.complex128], parms_id: Sequence[int], scale: float) -> bytes:
        """Encode ``slots`` at ``(parms_id, scale)``, encrypt under the context's public key, return SEAL bytes."""
        plain = sealapi.Plaintext()
        self._encoder.encode([complex(z) for z in slots.tolist()], list(parms_id), scale, plain)
        tenseal_cpp: Any = ts._ts_cpp
        with scratch() as tmp:
            path = str(tmp / "pt")
            plain.save(path)
            bridged = tenseal_cpp.Plaintext()
            bridged.load(self._context.data.seal_context(), path)
            cipher = tenseal_cpp.Ciphertext()
            self._context.data.encryptor().encrypt(bridged, cipher)
            cipher.save(path)
            return Path(path).read_bytes()


def header_prefix(ciphertext: Any) -> bytes:
    """The version bytes of SEAL's serialisation header, taken from a ciphertext SEAL saves itself."""
    with scratch() as tmp:
        path = str(tmp / "ct")
        ciphertext.save(path)
        head = Path(path).read_bytes()[:5]
    if head[:2] != _SEAL_MAGIC or head[2] != _HEADER_SIZE:
        raise RuntimeError("unexpected SEAL serialisation header")
    return head


def _sealed(prefix: bytes, body: bytes) -> bytes:
    """``body`` behind an uncompressed SEAL header (magic, size, version, compr_mode none, total size)."""
    return prefix + bytes([_COMPR_NONE]) + b"\x00\x00" + struct.pack("<Q", _HEADER_SIZE + len(body)) + body


def raw_bfv_ciphertext(prefix: bytes, parms_id: Sequence[int], degree: int,
                       c0_residues: Sequence[NDArray[np.uint64]]) -> bytes:
    """SEAL bytes of the size-2 BFV ciphertext ``(c0, 0)`` at ``parms_id``; ``c0`` given in RNS form.

    ``(c0, 0)`` decrypts (for any secret key) to the raw polynomial ``c0``: added to a result it shifts the
    noise by exactly ``c0`` and leaves the message unchanged while ``|c0|`` stays inside the noise budget.
    """
    if any(r.shape != (degree,) for r in c0_residues):
        raise ValueError("each residue row must have one coefficient per ring dimension")
    data = np.zeros((2, len(c0_residues), degree), dtype="<u8")
    data[0] = np.stack(c0_residues)
    array = struct.pack("<Q", data.size) + data.tobytes()
    body = (struct.pack("<4Q", *parms_id) + b"\x00" + struct.pack("<3Q", 2, degree, len(c0_residues))
            + struct.pack("<d", 1.0) + struct.pack("<Q", 1) + _sealed(prefix, array))
    return _sealed(prefix, body)
