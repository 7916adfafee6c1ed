"""SM2 digital signatures (GB/T 32918.2-2016 / GM/T 0003.2-2012) with the standard user id.

The elliptic-curve arithmetic is gmssl's (``gmssl.sm2.CryptSM2._kg``, ``sign`` and ``verify`` on a given ``e``);
everything around it is ours, because gmssl's own wrappers are unsafe for a product:

- ``e = SM3(Z_A || M)`` with ``Z_A = SM3(ENTL_A || ID_A || a || b || x_G || y_G || x_A || y_A)`` is computed here
  with OpenSSL's SM3 (gmssl's ``_sm3_z`` hard-codes the id and feeds a hex-encoded string through its own SM3);
- private keys and the per-signature ``k`` come from ``secrets`` (gmssl draws ``k`` with ``random.choice``, the
  Mersenne Twister, from which a private key can be recovered);
- the public key is given to gmssl as the 128 hex digits of ``x || y`` (gmssl's constructor strips every leading
  ``0``/``4`` digit of a key starting ``04``, which corrupts one key in eight);
- a verifier checks ``r, s ∈ [1, n-1]`` and that the public key is a point of the curve before any arithmetic.

Signatures are the 64 bytes ``r || s``; public keys the 65 bytes ``04 || x || y`` (uncompressed).
"""

from __future__ import annotations

import secrets

from cryptography.hazmat.primitives import hashes
from gmssl.sm2 import CryptSM2, default_ecc_table

DEFAULT_USER_ID = b"1234567812345678"

# The recommended curve sm2p256v1 (GB/T 32918.5); tests pass the standard's example curve the same way.
CURVE: dict[str, str] = dict(default_ecc_table)


def _sm3(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def _params(curve: dict[str, str]) -> tuple[int, int, int, int]:
    return int(curve["p"], 16), int(curve["a"], 16), int(curve["b"], 16), int(curve["n"], 16)


def _engine(curve: dict[str, str], private: int | None = None, public_xy: bytes | None = None) -> CryptSM2:
    eng = CryptSM2(private_key=f"{private:064x}" if private is not None else "", public_key="", ecc_table=curve)
    if public_xy is not None:
        eng.public_key = public_xy.hex()  # set directly: the constructor's "04" stripping is wrong
    return eng


def public_from_private(d: int, curve: dict[str, str] = CURVE) -> bytes:
    """``04 || x || y`` of ``d·G``."""
    xy = _engine(curve)._kg(d, curve["g"])
    return b"\x04" + bytes.fromhex(xy)


def new_private(curve: dict[str, str] = CURVE) -> int:
    """A private key ``d`` uniform in ``[1, n-2]`` (GB/T 32918.1 6.1)."""
    n = int(curve["n"], 16)
    return secrets.randbelow(n - 2) + 1


def on_curve(public: bytes, curve: dict[str, str] = CURVE) -> bool:
    """Whether ``public`` is ``04 || x || y`` of a point of the curve (not the point at infinity)."""
    if len(public) != 65 or public[0] != 4:
        return False
    p, a, b, _ = _params(curve)
    x, y = int.from_bytes(public[1:33], "big"), int.from_bytes(public[33:], "big")
    if not (0 <= x < p and 0 <= y < p):
        return False
    return (y * y - (x * x * x + a * x + b)) % p == 0


def z_a(public: bytes, user_id: bytes = DEFAULT_USER_ID, curve: dict[str, str] = CURVE) -> bytes:
    """``Z_A = SM3(ENTL_A || ID_A || a || b || x_G || y_G || x_A || y_A)``."""
    entl = (len(user_id) * 8).to_bytes(2, "big")
    fixed = bytes.fromhex(curve["a"] + curve["b"] + curve["g"])
    return _sm3(entl + user_id + fixed + public[1:])


def sign(
    d: int,
    public: bytes,
    message: bytes,
    user_id: bytes = DEFAULT_USER_ID,
    curve: dict[str, str] = CURVE,
    k: int | None = None,
) -> bytes:
    """The signature ``r || s`` of ``message``; ``k`` is for known-answer tests only (fresh from ``secrets``)."""
    e = _sm3(z_a(public, user_id, curve) + message)
    eng = _engine(curve, private=d)
    n = int(curve["n"], 16)
    while True:
        kk = k if k is not None else secrets.randbelow(n - 1) + 1
        sig = eng.sign(e, f"{kk:064x}")
        if sig is not None:
            return bytes.fromhex(sig)
        if k is not None:
            raise ValueError("this k gives a degenerate signature")


def verify(
    public: bytes, message: bytes, signature: bytes, user_id: bytes = DEFAULT_USER_ID, curve: dict[str, str] = CURVE
) -> bool:
    """Whether ``signature`` (``r || s``) is ``public``'s signature of ``message``."""
    n = int(curve["n"], 16)
    if len(signature) != 64 or not on_curve(public, curve):
        return False
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if not (1 <= r < n and 1 <= s < n) or (r + s) % n == 0:
        return False
    e = _sm3(z_a(public, user_id, curve) + message)
    try:
        return bool(_engine(curve, public_xy=public[1:]).verify(signature.hex(), e))
    except (TypeError, ValueError):  # a sum at infinity: no valid signature leads there
        return False
