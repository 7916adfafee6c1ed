"""The group behind every PSI and anonymous-lookup message: NIST P-256, points named by their x-coordinate.

Primitive: ECDH on P-256 as OpenSSL implements it (`cryptography`), used as x-only scalar multiplication.
``mul(k, x)`` is ``x(k·P)`` for either point ``P`` with x-coordinate ``x`` — the two points are ``±P`` and
``x(k·P) = x(k·(−P))``, so the map is well defined on x-coordinates and it commutes:
``mul(a, mul(b, x)) == mul(b, mul(a, x)) == mul(a·b mod n, x)``; ``mul(a⁻¹, mul(a, x)) == x``.
P-256 has cofactor 1: every valid x names a point of the prime-order group (no small-subgroup inputs).

Hash to curve: try-and-increment, ``x = SHA-256("veilbox-psi-h2c|v1|" ‖ domain ‖ 0x00 ‖ item ‖ counter)``
until ``x`` is the x-coordinate of a curve point (half the candidates are; the expected number of tries is
two). This is the construction Google's private-join-and-compute (the engine under OpenMined PSI) uses; it is a
random oracle onto the group, which is what the DDH-based security arguments of ECDH-PSI need. It is not
constant time; only the owner of the items hashes them, on its own machine.

Keys are integers in ``[1, n)`` drawn with `secrets` or derived with HKDF-SHA-256 (`derive_key`, 64 bytes
reduced mod n: bias below 2⁻²⁵⁶). Every decoded input is validated: 32 bytes, a coordinate below p, on the
curve — anything else raises `InvalidElement` (the gateway answers ``CIPHERTEXT_INVALID``).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mpc.errors import InvalidCiphertext

CURVE = ec.SECP256R1()
#: The order of P-256's group.
ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ELEMENT_BYTES = 32
_H2C = b"veilbox-psi-h2c|v1|"


class InvalidElement(InvalidCiphertext):
    """A message element that is not the x-coordinate of a P-256 point (or a malformed encoding)."""

    def __init__(self, message: str = "an element is not a valid P-256 x-coordinate") -> None:
        super().__init__(message)


def new_key() -> int:
    """A fresh secret scalar in ``[1, n)``."""
    return secrets.randbelow(ORDER - 1) + 1


def derive_key(master: bytes, label: bytes) -> int:
    """A scalar in ``[1, n)`` derived from a secret ``master`` and a public ``label`` (HKDF-SHA-256)."""
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=b"veilbox-psi-key|v1", info=label).derive(master)
    return int.from_bytes(okm, "big") % (ORDER - 1) + 1


def inverse(k: int) -> int:
    """``k⁻¹ mod n``: multiplying by it removes a blinding by ``k``."""
    return pow(k, -1, ORDER)


def _point(x: bytes) -> ec.EllipticCurvePublicKey:
    if len(x) != ELEMENT_BYTES:
        raise InvalidElement()
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(CURVE, b"\x02" + x)
    except ValueError:
        raise InvalidElement() from None


def decode(x: bytes) -> ec.EllipticCurvePublicKey:
    """The validated point named by ``x`` (decoding costs a square root: callers may keep decoded points)."""
    return _point(x)


def validate(x: bytes) -> bytes:
    """``x`` itself once checked to name a P-256 point; `InvalidElement` otherwise."""
    _point(x)
    return x


def hash_to_curve(item: bytes, domain: bytes = b"") -> bytes:
    """The x-coordinate of the point ``H(domain, item)`` (try-and-increment, see the module docstring)."""
    prefix = _H2C + domain + b"\x00" + item
    counter = 0
    while True:
        x = hashlib.sha256(prefix + counter.to_bytes(4, "big")).digest()
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(CURVE, b"\x02" + x)
            return x
        except ValueError:
            counter += 1


class Scalar:
    """A secret scalar ready to multiply (the OpenSSL key object is built once)."""

    def __init__(self, k: int) -> None:
        if not 0 < k < ORDER:
            raise ValueError("a scalar is in [1, n)")
        self._key = ec.derive_private_key(k, CURVE)

    def mul(self, x: bytes) -> bytes:
        """``x(k·P)`` for the point named by ``x`` (validated first)."""
        return self._key.exchange(ec.ECDH(), _point(x))

    def mul_point(self, point: ec.EllipticCurvePublicKey) -> bytes:
        """``x(k·P)`` for a point already decoded by `decode` (skips the square root)."""
        return self._key.exchange(ec.ECDH(), point)

    def mul_many(self, xs: Iterable[bytes]) -> list[bytes]:
        """`mul` over many elements, in order, reusing one ECDH object."""
        key, ecdh = self._key, ec.ECDH()
        return [key.exchange(ecdh, _point(x)) for x in xs]


def mul(k: int, x: bytes) -> bytes:
    """``x(k·P)`` for a one-off scalar; build a `Scalar` to multiply many elements by the same ``k``."""
    return Scalar(k).mul(x)


def hash_and_mul(k: int, items: Sequence[bytes], domain: bytes = b"") -> list[bytes]:
    """``x(k·H(item))`` for each item, in order."""
    s = Scalar(k)
    return [s.mul(hash_to_curve(i, domain)) for i in items]


def split(blob: bytes, limit: int | None = None) -> list[bytes]:
    """Concatenated 32-byte elements → a list (each validated). ``limit`` bounds the count."""
    if len(blob) % ELEMENT_BYTES:
        raise InvalidElement("the elements are not a whole number of 32-byte x-coordinates")
    count = len(blob) // ELEMENT_BYTES
    if limit is not None and count > limit:
        raise InvalidElement(f"at most {limit} elements per message")
    return [validate(blob[i:i + ELEMENT_BYTES]) for i in range(0, len(blob), ELEMENT_BYTES)]


def join(xs: Iterable[bytes]) -> bytes:
    """Elements → one blob of concatenated 32-byte x-coordinates (the inverse of `split`)."""
    return b"".join(xs)
