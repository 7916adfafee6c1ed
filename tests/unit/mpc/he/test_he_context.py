"""Public-context validation: what passes, and every way a bank's context is refused."""

from __future__ import annotations

import base64
import os

import pytest
import tenseal as ts
import tenseal.sealapi as sealapi

from mpc.he import _seal, client
from mpc.he._proto import fields, write_fields
from mpc.he.context import (
    MAX_COEFF_MODULUS_BITS_128,
    ContextLimits,
    galois_elements,
    load_public_context,
    security_violations,
)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_ckks_public_context_is_introspected(he):
    public = load_public_context(he.ckks_public(), scheme="ckks", min_levels=1, need_galois=True)
    info = public.info
    assert info.scheme == "ckks" and info.poly_modulus_degree == 8192 and info.slot_count == 4096
    assert [p.bit_length() for p in info.primes] == [60, 40, 40, 60]
    assert info.total_coeff_modulus_bits == 200 <= MAX_COEFF_MODULUS_BITS_128[8192]
    assert len(info.data_primes) == 3 and info.levels == 2
    assert info.global_scale == 2.0**40 and info.has_galois_keys and info.plain_modulus is None
    assert not public.tenseal.has_secret_key()


def test_bfv_public_context_reports_its_plain_modulus(he):
    info = load_public_context(he.bfv_public(), scheme="bfv").info
    assert info.plain_modulus == client.batching_prime(45, 8192)
    assert info.plain_modulus % (2 * 8192) == 1 and info.slot_count == 8192
    assert info.total_coeff_modulus_bits <= 218


@pytest.mark.parametrize("degree,bits,ok", [
    (8192, 218, True), (8192, 219, False), (16384, 438, True), (16384, 439, False),
    (4096, 109, True), (4096, 200, False), (2048, 54, True), (2048, 55, False), (1024, 28, False),
    (3000, 10, False),
])
def test_security_table(degree, bits, ok):
    assert (security_violations(degree, bits) == []) is ok


def test_security_table_matches_seal():
    for degree, bound in MAX_COEFF_MODULUS_BITS_128.items():
        assert sealapi.CoeffModulus.MaxBitCount(degree, sealapi.SEC_LEVEL_TYPE.TC128) == bound


GARBAGE = ["", "not base64!!", "AAAA====", b64(os.urandom(3000)), "\u00e9t\u00e9", b64(b"\x00")]


@pytest.mark.parametrize("payload", GARBAGE)
def test_garbage_is_refused(payload, he):
    he.refused("CIPHERTEXT_INVALID", load_public_context, payload, scheme="ckks")


def test_non_string_is_an_invalid_request(he):
    he.refused("INVALID_REQUEST", load_public_context, 12345, scheme="ckks")  # type: ignore[arg-type]


def test_truncated_context_is_refused(he):
    raw = base64.b64decode(he.ckks_public(galois=False))
    for cut in (len(raw) // 2, len(raw) - 7, 64):
        he.refused("CIPHERTEXT_INVALID", load_public_context, b64(raw[:cut]), scheme="ckks")


def test_context_with_secret_key_is_refused(he):
    secret = b64(he.ckks_bank().serialize(save_secret_key=True, save_galois_keys=False))
    info = he.refused("CIPHERTEXT_INVALID", load_public_context, secret, scheme="ckks")
    assert "secret key" in info.message


def test_symmetric_context_without_public_key_is_refused(he):
    sym = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 40, 40, 60],
                     encryption_type=ts.ENCRYPTION_TYPE.SYMMETRIC)
    sym.global_scale = 2**40
    raw = sym.serialize(save_secret_key=False)
    he.refused("CIPHERTEXT_INVALID", load_public_context, b64(raw), scheme="ckks")


def test_scheme_mismatch_both_ways(he):
    info = he.refused("CIPHERTEXT_INVALID", load_public_context, he.bfv_public(), scheme="ckks")
    assert "BFV" in info.message
    info = he.refused("CIPHERTEXT_INVALID", load_public_context, he.ckks_public(galois=False), scheme="bfv")
    assert "CKKS" in info.message


def test_degree_outside_allowed_set(he):
    small = ts.context(ts.SCHEME_TYPE.CKKS, 2048, coeff_mod_bit_sizes=[30, 24])  # 54 bits: secure, too small
    small.global_scale = 2**20
    public = client.public_context_b64(small, galois_keys=False)
    info = he.refused("CIPHERTEXT_INVALID", load_public_context, public, scheme="ckks")
    assert "allowed set" in info.message
    assert load_public_context(public, scheme="ckks",
                               limits=ContextLimits(allowed_degrees=frozenset({2048}))).info.levels == 0


def test_insecure_parameters_cannot_be_built_and_a_forged_context_is_refused(he):
    with pytest.raises(ValueError):
        ts.context(ts.SCHEME_TYPE.CKKS, 4096, coeff_mod_bit_sizes=[60, 40, 40, 60])
    # Forge one: a valid N=4096 context whose parameter block claims a 200-bit modulus.
    base = ts.context(ts.SCHEME_TYPE.CKKS, 4096, coeff_mod_bit_sizes=[40, 20, 40])
    base.global_scale = 2**20
    raw = base.serialize(save_secret_key=False, save_relin_keys=False)
    weak = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
    weak.set_poly_modulus_degree(4096)
    weak.set_coeff_modulus(sealapi.CoeffModulus.Create(4096, [60, 40, 40, 60]))
    with _seal.scratch() as tmp:
        weak.save(str(tmp / "p"))
        weak_bytes = (tmp / "p").read_bytes()
    forged = write_fields([(n, w, weak_bytes if n == 1 else v) for n, w, v in fields(raw)])
    he.refused("CIPHERTEXT_INVALID", load_public_context, b64(forged), scheme="ckks",
               limits=ContextLimits(allowed_degrees=frozenset({4096})))


def test_depth_is_checked(he):
    shallow = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 60])  # no rescale left
    shallow.global_scale = 2**40
    public = client.public_context_b64(shallow, galois_keys=False)
    assert load_public_context(public, scheme="ckks").info.levels == 0
    info = he.refused("CIPHERTEXT_INVALID", load_public_context, public, scheme="ckks", min_levels=1)
    assert "rescaling" in info.message


def test_galois_keys_required_only_when_asked(he):
    no_keys = he.ckks_public(galois=False)
    assert not load_public_context(no_keys, scheme="ckks", min_levels=1).info.has_galois_keys
    info = he.refused("CIPHERTEXT_INVALID", load_public_context, no_keys, scheme="ckks", need_galois=True)
    assert "Galois" in info.message


def test_galois_elements_are_the_power_of_two_rotations(he):
    keys = ts.context_from(base64.b64decode(he.ckks_public())).galois_keys().data
    elements = galois_elements(8192)
    assert len(elements) == 12 and elements[0] == 3
    assert all(keys.has_key(e) for e in elements)


def test_oversized_context_is_refused_before_decoding(he):
    info = he.refused("CIPHERTEXT_INVALID", load_public_context, "!" * 5000, scheme="ckks",
                      limits=ContextLimits(max_bytes=1000))
    assert "limit" in info.message  # not "base64": the size check came first


def test_scale_out_of_range_is_refused(he):
    odd = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 40, 40, 60])
    odd.global_scale = 2**10
    public = client.public_context_b64(odd, galois_keys=False)
    info = he.refused("CIPHERTEXT_INVALID", load_public_context, public, scheme="ckks")
    assert "scale" in info.message


def test_bfv_without_batching_is_refused(he):
    no_batch = ts.context(ts.SCHEME_TYPE.BFV, 8192, plain_modulus=2**20, coeff_mod_bit_sizes=[])
    public = client.public_context_b64(no_batch, galois_keys=False)
    info = he.refused("CIPHERTEXT_INVALID", load_public_context, public, scheme="bfv")
    assert "batching" in info.message


def test_auto_flags_are_fixed_by_the_server(he):
    odd = ts.context_from(base64.b64decode(he.bfv_public()))
    odd.auto_rescale = False
    odd.auto_mod_switch = False
    public = load_public_context(b64(odd.serialize()), scheme="bfv")
    assert public.tenseal.auto_rescale and public.tenseal.auto_mod_switch
    assert he.bfv_bank().has_secret_key()  # the bank's own copy is untouched
