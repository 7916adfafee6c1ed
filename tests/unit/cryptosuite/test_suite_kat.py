"""Known-answer tests of every algorithm of both cryptographic suites (docs/crypto.md "Suites").

Sources: SM3 GB/T 32905-2016 Annex A; SM4 GB/T 32907-2016 Annex A (one block); SM4-GCM RFC 8998 A.1; SM2
GB/T 32918.2-2016 / GM/T 0003.2 Annex A (example curve, user id ALICE123@YAHOO.COM, fixed k) and GM/T 0003.5 /
GB/T 32918.5 Annex A (recommended curve, standard user id 1234567812345678); SHA-256 FIPS 180-2 "abc"; HMAC-SHA-256
RFC 4231 case 2; Ed25519 RFC 8032 7.1 test 1; AES-256-GCM the GCM specification's test cases 13 and 14.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from cryptosuite import AeadError, load_verify_key, sm2, suite_of

INTL = suite_of("intl")
SM = suite_of("sm")


def test_sm3_gbt32905_vectors():
    assert SM.hexdigest(b"abc") == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert SM.hexdigest(b"abcd" * 16) == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    assert SM.digest(b"abc").startswith("sm3:")


def test_hmac_sm3_is_rfc2104_over_sm3():
    key, msg = b"k" * 20, b"what do ya want for nothing?"
    k = key.ljust(64, b"\0")
    inner = SM.hash(bytes(b ^ 0x36 for b in k) + msg)
    assert SM.hmac(key, msg) == SM.hash(bytes(b ^ 0x5C for b in k) + inner)


def test_sm4_gbt32907_block_vector():
    key = bytes.fromhex("0123456789abcdeffedcba9876543210")
    enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    assert (enc.update(key) + enc.finalize()).hex() == "681edf34d206965e86b3e94f536e4246"


def test_sm4_gcm_rfc8998_vector():
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    nonce = bytes.fromhex("00001234567800000000ABCD")
    aad = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    pt = bytes.fromhex("AA" * 8 + "BB" * 8 + "CC" * 8 + "DD" * 8 + "EE" * 8 + "FF" * 8 + "EE" * 8 + "AA" * 8)
    ct = bytes.fromhex(
        "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
        "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
    )
    tag = bytes.fromhex("83DE3541E4C2B58177E065A9BF7B62EC")
    blob = SM.aead_encrypt(key, pt, aad, nonce=nonce)
    assert blob == nonce + ct + tag
    assert SM.aead_decrypt(key, blob, aad) == pt


def test_sha256_and_hmac_sha256_vectors():
    assert INTL.hexdigest(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert INTL.hmac_hex(b"Jefe", b"what do ya want for nothing?") == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


@pytest.mark.parametrize("suite", [INTL, SM], ids=["intl", "sm"])
def test_hmac_of_a_batch_is_each_items_hmac(suite):
    items = [b"what do ya want for nothing?", b"", b"P0000001", b"what do ya want for nothing?"]
    assert suite.hmac_hex_many(b"Jefe", items) == [suite.hmac_hex(b"Jefe", i) for i in items]
    rfc4231_case2 = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert INTL.hmac_hex_many(b"Jefe", items[:1]) == [rfc4231_case2]


def test_aes256_gcm_vectors():
    key, nonce = bytes(32), bytes(12)
    assert INTL.aead_encrypt(key, b"", nonce=nonce) == nonce + bytes.fromhex("530f8afbc74536b9a963b4f1c4cb738b")
    assert INTL.aead_encrypt(key, bytes(16), nonce=nonce) == nonce + bytes.fromhex(
        "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"
    )


def test_ed25519_rfc8032_test1():
    sk = INTL.signing_key_from_bytes(bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
    assert sk.public.text == "ed25519:d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    sig = sk.sign(b"")
    assert sig.hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    assert INTL.verify(sk.public.text, b"", sig)
    assert not INTL.verify(sk.public.text, b"x", sig)


# GB/T 32918.2-2016 Annex A: the example curve over F_p (256 bits).
EXAMPLE_CURVE = {
    "p": "8542D69E4C044F18E8B92435BF6FF7DE457283915C45517D722EDB8B08F1DFC3",
    "a": "787968B4FA32C3FD2417842E73BBFEFF2F3C848B6831D7E0EC65228B3937E498",
    "b": "63E4C6D3B23B0C849CF84241484BFE48F61D59A5B16BA06E6E12D1DA27C5249A",
    "g": "421DEBD61B62EAB6746434EBC3CC315E32220B3BADD50BDC4C4E6C147FEDD43D"
    "0680512BCBB42C07D47349D2153B70C4E5D7FDFCBFA36EA1A85841B9E46E09A2",
    "n": "8542D69E4C044F18E8B92435BF6FF7DD297720630485628D5AE74EE7C32E79B7",
}


def test_sm2_gbt32918_example_signature_with_fixed_k():
    d = int("128B2FA8BD433C6C068C8D803DFF79792A519A55171B1B650C23661D15897263", 16)
    pub = sm2.public_from_private(d, EXAMPLE_CURVE)
    assert pub.hex().upper() == (
        "04"
        "0AE4C7798AA0F119471BEE11825BE46202BB79E2A5844495E97C04FF4DF2548A"
        "7C0240F88F1CD4E16352A73C17B7F16F07353E53A176D684A9FE0C6BB798E857"
    )
    uid, msg = b"ALICE123@YAHOO.COM", b"message digest"
    assert sm2.z_a(pub, uid, EXAMPLE_CURVE).hex().upper() == (
        "F4A38489E32B45B6F876E3AC2168CA392362DC8F23459C1D1146FC3DBFB7BC9A"
    )
    k = int("6CB28D99385C175C94F94E934817663FC176D925DD72B727260DBAAE1FB2F96F", 16)
    sig = sm2.sign(d, pub, msg, uid, EXAMPLE_CURVE, k=k)
    assert sig.hex().upper() == (
        "40F1EC59F793D9F49E09DCEF49130D4194F79FB1EED2CAA55BACDB49C4E755D1"
        "6FC6DAC32C5D5CF10C77DFB20F7C2EB667A457872FB09EC56327A67EC7DEEBE7"
    )
    assert sm2.verify(pub, msg, sig, uid, EXAMPLE_CURVE)
    assert not sm2.verify(pub, b"message digesT", sig, uid, EXAMPLE_CURVE)
    assert not sm2.verify(pub, msg, sig, b"1234567812345678", EXAMPLE_CURVE)


def test_sm2_recommended_curve_standard_user_id_vector():
    """GM/T 0003.5 / GB/T 32918.5 Annex A: sm2p256v1, user id 1234567812345678, "message digest"."""
    d = int("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8", 16)
    key = SM.signing_key_from_bytes(d.to_bytes(32, "big"))
    sig = bytes.fromhex(
        "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
        "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
    )
    assert SM.verify(key.public.text, b"message digest", sig)
    assert not SM.verify(key.public.text, b"message digest!", sig)
    pub = bytes.fromhex(key.public.text.removeprefix("sm2:"))
    k = int("59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21", 16)
    assert sm2.sign(d, pub, b"message digest", k=k) == sig


@pytest.mark.parametrize("name", ["intl", "sm"])
def test_round_trip_and_tampering(name):
    s = suite_of(name)
    sk = s.new_signing_key()
    sig = s.sign(sk, b"checkpoint")
    pub = load_verify_key(sk.public.text)
    assert pub == sk.public and pub.key_id.startswith(sk.algorithm + ":")
    assert s.verify(pub, b"checkpoint", sig)
    assert not s.verify(pub, b"checkpoinT", sig)
    assert not s.verify(pub, b"checkpoint", bytes(len(sig)))
    other = suite_of("sm" if name == "intl" else "intl")
    assert not other.verify(pub, b"checkpoint", sig)  # a key of the other suite is refused, never tried
    assert s.signing_key_from_bytes(sk.private_bytes()).public == sk.public
    assert load_verify_key(sk.public.pem) == sk.public  # the PEM names the algorithm
    if name == "sm":  # id-ecPublicKey on sm2p256v1, as OpenSSL and GmSSL write an SM2 key
        assert "MFkwEwYHKoZIzj0CAQYIKoEcz1UBgi0DQgAE" in sk.public.pem
    key = s.new_aead_key()
    blob = s.aead_encrypt(key, b"secret", b"ctx")
    assert s.aead_decrypt(key, blob, b"ctx") == b"secret"
    for bad_blob, aad in ((blob, b"other"), (blob[:-1] + bytes([blob[-1] ^ 1]), b"ctx"), (blob[:20], b"ctx")):
        with pytest.raises(AeadError):
            s.aead_decrypt(key, bad_blob, aad)


def test_sm2_rejects_out_of_range_and_off_curve():
    key = SM.new_signing_key()
    raw = bytes.fromhex(key.public.text.removeprefix("sm2:"))
    n = int(sm2.CURVE["n"], 16)
    sig = key.sign(b"m")
    assert not sm2.verify(raw, b"m", n.to_bytes(32, "big") + sig[32:])
    assert not sm2.verify(raw, b"m", sig[:32] + bytes(32))
    with pytest.raises(ValueError):
        load_verify_key("sm2:" + (raw[:-1] + bytes([raw[-1] ^ 1])).hex())
    with pytest.raises(ValueError):
        suite_of("rot13")
    assert hashes.SM3().digest_size == 32
