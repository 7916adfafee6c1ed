"""Bank-side helpers and the TenSEAL envelope codec."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import tenseal as ts

from mpc.he import client
from mpc.he._proto import VectorEnvelope, fields, read_vector, write_fields, write_vector


def test_primes_and_batching_prime():
    assert [n for n in range(40) if client.is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37]
    assert client.is_prime(2**61 - 1) and not client.is_prime(2**61 + 1) and not client.is_prime(561)
    for bits, degree in ((45, 8192), (30, 8192), (60, 16384)):
        p = client.batching_prime(bits, degree)
        assert p.bit_length() == bits and p % (2 * degree) == 1 and client.is_prime(p)
    with pytest.raises(ValueError):
        client.batching_prime(10, 8192)


def test_public_export_drops_secret_and_relin_keys(he):
    public = ts.context_from(base64.b64decode(he.ckks_public(galois=False)))
    assert not public.has_secret_key() and public.has_public_key()
    assert not public.has_relin_keys() and not public.has_galois_keys()
    assert he.ckks_bank().has_secret_key()


def test_encrypt_decrypt_roundtrips(he):
    bank = he.ckks_bank()
    x = np.array([[1.0, 2.0], [3.0, -4.0], [0.5, 0.25]])
    cols = client.encrypt_columns(bank, x)
    assert len(cols) == 2
    assert np.allclose(ts.ckks_vector_from(bank, base64.b64decode(cols[1])).decrypt(), x[:, 1], atol=1e-5)
    assert np.allclose(client.sigmoid([0.0, 100.0, -100.0]), [0.5, 1.0, 0.0])
    with pytest.raises(ValueError):
        client.encrypt_columns(bank, np.ones(3))
    with pytest.raises(ValueError):
        client.decrypt_scores(bank, cols, "columns")
    with pytest.raises(ValueError):
        client.encrypt_thresholds(he.bfv_bank(), [1.5])


def test_security_precheck():
    assert client.ckks_security_bits_ok(8192, (60, 40, 40, 60))
    assert not client.ckks_security_bits_ok(4096, (60, 40, 40, 60))
    assert not client.ckks_security_bits_ok(3000, (20,))


def test_envelope_roundtrip_and_malformed_input():
    env = VectorEnvelope(sizes=(300,), ciphertexts=(b"abc", b"\x00" * 200), scale=2.0**40)
    assert read_vector(write_vector(env)) == env
    bfv = VectorEnvelope(sizes=(1, 2), ciphertexts=(b"x",), scale=None)
    assert read_vector(write_vector(bfv)) == bfv
    raw = write_vector(env)
    assert write_fields(fields(raw)) == raw
    for bad in (b"\x12\x7f", b"\xff" * 12, b"\x1d\x00", b"\x0b", raw[:-3], b"\x22\x01x"):
        with pytest.raises(ValueError):
            read_vector(bad)
