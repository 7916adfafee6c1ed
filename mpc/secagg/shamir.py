"""Shamir t-of-n secret sharing over the prime field GF(p), p = 2**256 + 297.

p is the smallest prime above 2**256, so every 32-byte secret (a self-mask seed or an X25519 private key)
is a single field element and every share value fits in 33 bytes. Any ``t`` shares determine the secret;
any ``t − 1`` shares are uniformly distributed and independent of it (perfect hiding). Coefficients come
from the OS CSPRNG through `prg.random_below`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

from mpc.secagg.prg import random_below

PRIME = 2**256 + 297
SECRET_BYTES = 32
SHARE_BYTES = 33
_REDUCE_EVERY = 32  # Horner steps between reductions: x is a small participant index, so growth is slow


class Share(NamedTuple):
    """The point ``(x, f(x))`` of a random polynomial ``f`` of degree ``t − 1`` with ``f(0) = secret``."""

    x: int
    y: int


def split(secret: int, threshold: int, xs: Sequence[int]) -> list[Share]:
    """Shares of ``secret`` at distinct non-zero points ``xs``; any ``threshold`` of them rebuild it."""
    if not 0 <= secret < PRIME:
        raise ValueError("secret is not a field element")
    _check_points(xs)
    if not 1 <= threshold <= len(xs):
        raise ValueError("threshold must be between 1 and the number of shares")
    # Highest-degree coefficient first, for Horner's rule; the constant term is the secret.
    coefficients = [random_below(PRIME) for _ in range(threshold - 1)]
    coefficients.append(secret)
    shares = []
    for x in xs:
        acc = 0
        for step, coefficient in enumerate(coefficients, start=1):
            acc = acc * x + coefficient
            if step % _REDUCE_EVERY == 0:
                acc %= PRIME
        shares.append(Share(x, acc % PRIME))
    return shares


def reconstruct(shares: Sequence[Share]) -> int:
    """The value at 0 of the polynomial of degree < len(shares) through ``shares`` (Lagrange interpolation).

    With at least ``t`` consistent shares this is the secret; with fewer it is an unrelated field element.
    """
    if not shares:
        raise ValueError("no shares")
    xs = tuple(share.x for share in shares)
    _check_points(xs)
    if any(not 0 <= share.y < PRIME for share in shares):
        raise ValueError("share value is not a field element")
    weights = _lagrange_at_zero(xs)
    return sum(w * share.y for w, share in zip(weights, shares, strict=True)) % PRIME


def split_bytes(secret: bytes, threshold: int, xs: Sequence[int]) -> list[Share]:
    """Shares of a 32-byte secret."""
    if len(secret) != SECRET_BYTES:
        raise ValueError("secret must be 32 bytes")
    return split(int.from_bytes(secret, "big"), threshold, xs)


def reconstruct_bytes(shares: Sequence[Share]) -> bytes:
    """The 32-byte secret behind ``shares``; `ValueError` if the result cannot be one (too few/bad)."""
    value = reconstruct(shares)
    if value >= 1 << (8 * SECRET_BYTES):
        raise ValueError("shares do not reconstruct a 32-byte secret")
    return value.to_bytes(SECRET_BYTES, "big")


def encode_value(y: int) -> bytes:
    """A share value as 33 big-endian bytes."""
    if not 0 <= y < PRIME:
        raise ValueError("share value is not a field element")
    return y.to_bytes(SHARE_BYTES, "big")


def decode_value(data: bytes) -> int:
    """The inverse of `encode_value`; `ValueError` on a wrong length or an out-of-field value."""
    if len(data) != SHARE_BYTES:
        raise ValueError("share value must be 33 bytes")
    y = int.from_bytes(data, "big")
    if y >= PRIME:
        raise ValueError("share value is not a field element")
    return y


def _check_points(xs: Sequence[int]) -> None:
    if len(set(xs)) != len(xs):
        raise ValueError("share points must be distinct")
    if any(not 0 < x < PRIME for x in xs):
        raise ValueError("share points must be non-zero field elements")


@lru_cache(maxsize=256)
def _lagrange_at_zero(xs: tuple[int, ...]) -> tuple[int, ...]:
    """Weights w_i = prod_{j≠i} x_j / (x_j − x_i) mod p, cached per point set (one set per round)."""
    weights = []
    for i, xi in enumerate(xs):
        numerator = 1
        denominator = 1
        for j, xj in enumerate(xs):
            if j != i:
                numerator = numerator * xj % PRIME
                denominator = denominator * (xj - xi) % PRIME
        weights.append(numerator * pow(denominator, -1, PRIME) % PRIME)
    return tuple(weights)
