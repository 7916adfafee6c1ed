"""Shared bank keys and helpers for the HE tests.

Key generation (and the 35 MB Galois keys) is the slow part, so every context is built once per test
process and shared through session-scoped fixtures. Helpers reach the tests through the ``he`` fixture
(the suite runs with ``--import-mode=importlib``, so this file cannot be imported by name).
"""

from __future__ import annotations

import base64
import math
from functools import cache
from types import SimpleNamespace

import numpy as np
import pytest
import tenseal as ts
import tenseal.sealapi as sealapi

from mpc.errors import MpcError
from mpc.he import _seal, client
from mpc.he._proto import VectorEnvelope, read_vector, write_vector
from mpc.he.scoring import load_scoring_context


@cache
def ckks_bank() -> ts.Context:
    """The bank's secret CKKS context (N=8192, 60/40/40/60, scale 2^40, Galois keys)."""
    return client.make_ckks_context()


@cache
def ckks_public(galois: bool = True) -> str:
    return client.public_context_b64(ckks_bank(), galois_keys=galois)


@cache
def bfv_bank() -> ts.Context:
    """The bank's secret BFV context (N=8192, 45-bit batching prime)."""
    return client.make_bfv_context()


@cache
def bfv_public() -> str:
    return client.public_context_b64(bfv_bank(), galois_keys=False)


def relabel(encoded: str, size: int) -> str:
    """A serialised vector with its declared logical size changed (what a dishonest bank could send)."""
    envelope = read_vector(base64.b64decode(encoded))
    return base64.b64encode(write_vector(VectorEnvelope((size,), envelope.ciphertexts, envelope.scale))).decode()


def complex_slots(context: ts.Context, vector: ts.CKKSVector) -> tuple[np.ndarray, float]:
    """All N/2 complex slots of a CKKS ciphertext, decrypted with the bank's secret key through SEAL."""
    parms = context.data.seal_context().key_context_data().parms()
    cipher = vector.data.ciphertext()[0]
    with _seal.scratch() as tmp:
        path = str(tmp / "x")
        parms.save(path)
        loaded = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
        loaded.load(path)
        seal_context = sealapi.SEALContext(loaded, True, sealapi.SEC_LEVEL_TYPE.TC128)
        context.secret_key().data.save(path)
        secret = sealapi.SecretKey()
        secret.load(seal_context, path)
        cipher.save(path)
        seal_cipher = sealapi.Ciphertext()
        seal_cipher.load(seal_context, path)
    plain = sealapi.Plaintext()
    sealapi.Decryptor(seal_context, secret).decrypt(seal_cipher, plain)
    slots = np.array(sealapi.CKKSEncoder(seal_context).decode_complex(plain))
    return slots, float(cipher.scale)


def encoded_slots(context: ts.Context, values: np.ndarray, scale: float) -> np.ndarray:
    """What SEAL's encoder really stores for ``values`` (zero-padded) at ``scale``, decoded to N/2 complex slots."""
    with _seal.scratch() as tmp:
        path = str(tmp / "x")
        context.data.seal_context().key_context_data().parms().save(path)
        loaded = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
        loaded.load(path)
    encoder = sealapi.CKKSEncoder(sealapi.SEALContext(loaded, True, sealapi.SEC_LEVEL_TYPE.TC128))
    plain = sealapi.Plaintext()
    encoder.encode([float(v) for v in values], scale, plain)
    return np.array(encoder.decode_complex(plain))


def coefficient_norm(slot_error: np.ndarray, scale: float, degree: int) -> float:
    """‖m‖₂ of the polynomial whose decoded slots are ``slot_error`` (Parseval for the canonical embedding)."""
    return math.sqrt(2.0 / degree * float(np.sum(np.abs(slot_error * scale) ** 2)))


def refused(code: str, call, *args, **kwargs) -> MpcError:
    """Run ``call`` and return the `MpcError` it must raise with ``code`` (any other outcome fails)."""
    with pytest.raises(MpcError) as info:
        call(*args, **kwargs)
    assert info.value.code == code, info.value
    return info.value


@pytest.fixture(scope="session")
def he() -> SimpleNamespace:
    """Builders and helpers: contexts (cached), ``refused``, ``relabel``, ``complex_slots``, ``coefficient_norm``."""
    return SimpleNamespace(ckks_bank=ckks_bank, ckks_public=ckks_public, bfv_bank=bfv_bank, bfv_public=bfv_public,
                           refused=refused, relabel=relabel, complex_slots=complex_slots, encoded_slots=encoded_slots,
                           coefficient_norm=coefficient_norm)


# The bank's secret context and the service's view of its public part in each layout, shared by the scoring and
# decision tests.
@pytest.fixture(scope="module")
def bank():
    return ckks_bank()


@pytest.fixture(scope="module")
def row_public():
    return load_scoring_context(ckks_public(), "row")


@pytest.fixture(scope="module")
def col_public():
    return load_scoring_context(ckks_public(galois=False), "columns")
