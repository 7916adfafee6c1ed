"""ECDH private set intersection (size and members) and the anonymous keyword lookup, over `mpc.psi.group`.

Notation: ``H`` hashes to P-256 (`group.hash_to_curve`), ``b`` is a service key, ``a`` a bank key, ``x(·)``
names a point by its x-coordinate; every list a party sends is either in the order the protocol needs or
sorted (sorting pseudorandom elements is a uniform shuffle: the order says nothing about the items).

Service set (once per dataset version and key): ``T = sort({x(b·H(y)) : y ∈ Y} ∪ D)`` where ``D`` are dummies
``x(b·H(r))`` for fresh random ``r`` that pad ``|T|`` to `padded_size` (the bank learns only a size class).

**psi_size** (the service learns the intersection size, the bank only its DP release):

1. setup, once per (bank key, dataset version): the service sends ``T``; the bank returns
   ``R = sort({x(a·t) : t ∈ T})`` (`SizeClient.double_blind`); the service keeps the 64-bit tags of ``R``
   (`size_table`).
2. query: the bank sends ``Q = sort({x(a·H(x)) : x ∈ X})`` (`SizeClient.blind`, distinct ids); the service
   computes ``x(b·q)`` = ``x(ab·H(x))`` and counts how many tags fall in the table (`size_count`). The service
   cannot tell which ``t ∈ T`` a match came from (``R`` is shuffled and re-keyed under ``a``) nor which bank
   id it is (it never holds ``a``); it releases the count with DP noise.

**psi_members** (the bank learns which of its ids are in ``Y``):

The service sends `members_filter` (the sorted 64-bit tags of ``T``); the bank sends ``x(a·H(x))`` in its own
order (`MembersClient.blind`), the service returns ``x(b·e)`` for each (`evaluate`), the bank removes ``a``
(``x(a⁻¹·…) = x(b·H(x))``) and looks the tag up (`MembersClient.members`). False positives: ``|T|/2⁶⁴`` per
bank id (5·10⁻¹³ at 10M).

**anonymous lookup** (the bank learns one subject's verdict; the service learns a bucket):

Subjects are spread over ``2^bits`` buckets by a public hash (`bucket_of`); `choose_bits` takes the most bits
that leave every bucket at least ``k`` subjects. The bank sends its subject's bucket and ``e = x(a·H(s))``.
The service draws a fresh ``r`` per call and answers ``z = x(rb·e)`` and, for every subject ``y`` of the
bucket, a label ``tag(K_y) ‖ AES-GCM(key(K_y), verdict_y, aad)`` with ``K_y = x(r·X_y)``, ``X_y = x(b·H(y))``
(`anon_answer`), sorted by tag. The bank computes ``K = x(a⁻¹·z) = x(rb·H(s))`` and opens the one label whose
tag matches (`AnonClient.open`); no label matches when its subject is not in the dataset. Without ``rb·H(y)``
for another ``y`` (one evaluation per call, under a key used once) the other labels are pseudorandom.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mpc.errors import InvalidInput
from mpc.psi import group
from mpc.psi.group import ELEMENT_BYTES, InvalidElement, Scalar

SIZE = b"size"
MEMBERS = b"members"
ANON = b"anon"
LABEL_BYTES = 16 + 1 + 16  # lookup tag, AES-GCM(1 byte) with its 16-byte tag
_NONCE = b"\x00" * 12  # every label key is used once (fresh r per call)


def padded_size(n: int) -> int:
    """``n`` rounded up to its size class: a multiple of 16, and 16 steps per power of two above 256 (at most
    1/16 + 16 more elements)."""
    step = max(16, 1 << max(0, n.bit_length() - 5))
    return -(-n // step) * step


def tag64(domain: bytes, x: bytes) -> int:
    """The 64-bit lookup tag of element ``x`` in ``domain`` (SHA-256 prefix): tables store tags, not points."""
    return int.from_bytes(hashlib.sha256(b"veilbox-psi-tag|" + domain + b"|" + x).digest()[:8], "big")


def tags(domain: bytes, xs: Sequence[bytes]) -> np.ndarray:
    """`tag64` of each element, in order, as a uint64 array."""
    return np.fromiter((tag64(domain, x) for x in xs), dtype=np.uint64, count=len(xs))


def _items(ids: Sequence[str]) -> list[bytes]:
    out = [i.encode() for i in ids]
    if len(set(out)) != len(out):
        raise InvalidInput("the ids must be distinct")
    return out


# --- service side ---------------------------------------------------------------------------------------------


#: Below this many ids a setup runs in the calling process (starting workers costs about a second).
PARALLEL_MIN = 200_000


def _evaluate_chunk(args: tuple[int, list[str], bytes]) -> list[bytes]:
    key, ids, domain = args
    return group.hash_and_mul(key, [i.encode() for i in ids], domain)


def evaluate_ids(key: int, ids: Sequence[str], domain: bytes, processes: int = 1) -> list[bytes]:
    """``x(key·H(domain, id))`` for each id, in order (the service's setup work: one scalar product per id).

    With ``processes > 1`` and at least `PARALLEL_MIN` ids the work is split over that many worker processes
    (started with ``spawn``: the caller may be a threaded server); OpenSSL's scalar multiplication holds the GIL,
    so threads would not help."""
    if processes <= 1 or len(ids) < PARALLEL_MIN:
        return _evaluate_chunk((key, list(ids), domain))
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    step = -(-len(ids) // (processes * 8))
    chunks = [(key, list(ids[i:i + step]), domain) for i in range(0, len(ids), step)]
    out: list[bytes] = []
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        for part in pool.map(_evaluate_chunk, chunks):
            out.extend(part)
    return out


def server_set(key: int, evaluated: Sequence[bytes], domain: bytes) -> list[bytes]:
    """``T``: the evaluated ids plus dummies up to `padded_size`, sorted."""
    dummies = padded_size(len(evaluated)) - len(evaluated)
    pad = group.hash_and_mul(key, [secrets.token_bytes(32) for _ in range(dummies)], domain + b"|dummy")
    return sorted([*evaluated, *pad])


def evaluate(key: int, elements: Sequence[bytes]) -> list[bytes]:
    """``x(key·e)`` for each element, in order (elements are validated: `group.InvalidElement`)."""
    return Scalar(key).mul_many(elements)


def size_table(server: Sequence[bytes], returned: Sequence[bytes]) -> np.ndarray:
    """The sorted tags of the bank's double-blinded set ``R``; it must have ``|T|`` distinct valid elements."""
    if len(returned) != len(server):
        raise InvalidElement(f"the double-blinded set must have exactly {len(server)} elements")
    for x in returned:
        group.validate(x)
    table = np.unique(tags(SIZE, returned))
    if len(table) != len(returned):
        raise InvalidElement("the double-blinded set repeats an element")
    return table


def size_count(key: int, query: Sequence[bytes], table: np.ndarray) -> int:
    """The exact number of the bank's (distinct) blinded ids whose double-blinding is in ``table``."""
    if len(set(query)) != len(query):
        raise InvalidInput("the blinded ids must be distinct")
    return int(contains(table, tags(SIZE, evaluate(key, query))).sum())


def contains(table: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Membership of ``values`` in the sorted ``table`` (binary search: O(q log n), the table is not re-sorted)."""
    if len(table) == 0:
        return np.zeros(len(values), dtype=bool)
    at = np.searchsorted(table, values)
    found: np.ndarray = table[np.minimum(at, len(table) - 1)] == values
    return found


def members_filter(server: Sequence[bytes]) -> bytes:
    """The sorted 64-bit tags of ``T`` (big-endian, 8 bytes each)."""
    return np.sort(tags(MEMBERS, server)).astype(">u8").tobytes()


def bucket_hashes(subjects: Sequence[str]) -> np.ndarray:
    """The public 64-bit bucket hash of each subject; a bucket is a prefix of it (`bucket_of`)."""
    return np.fromiter(
        (int.from_bytes(hashlib.sha256(b"veilbox-anon-bucket|v1|" + s.encode()).digest()[:8], "big")
         for s in subjects), dtype=np.uint64, count=len(subjects))


def bucket_of(subject: str, bits: int) -> int:
    """The anonymous-lookup bucket of ``subject``: the top ``bits`` bits of its bucket hash (0 if ``bits`` is 0)."""
    if bits == 0:
        return 0
    return int(bucket_hashes([subject])[0]) >> (64 - bits)


def choose_bits(hashes: np.ndarray, k: int, max_bits: int = 24) -> int | None:
    """The most prefix bits for which every one of the ``2^bits`` buckets holds at least ``k`` subjects (None
    if there are fewer than ``k`` subjects)."""
    n = len(hashes)
    if n < k or k < 1:
        return None
    bits = min(max_bits, max(0, (n // k).bit_length() - 1))
    while bits > 0:
        counts = np.bincount((hashes >> np.uint64(64 - bits)).astype(np.int64), minlength=1 << bits)
        if int(counts.min()) >= k:
            return bits
        bits -= 1
    return 0


@dataclass(frozen=True)
class AnonAnswer:
    """The service's answer to one anonymous lookup: the re-blinded element and the bucket's sorted labels."""

    evaluated: bytes  # z = x(rb·e)
    labels: bytes  # sorted 33-byte labels


def anon_answer(key: int, element: bytes, bucket: Sequence[tuple[bytes, bool]], aad: bytes,
                points: Sequence[Any] | None = None) -> AnonAnswer:
    """Answer one anonymous lookup: ``bucket`` is ``(X_y, verdict_y)`` for every subject of the asked bucket;
    ``points``, if given, are the same ``X_y`` already decoded (`group.decode`), in the same order."""
    group.validate(element)
    if points is not None and len(points) != len(bucket):
        raise ValueError("one decoded point per bucket subject")
    r = group.new_key()
    z = group.mul(r * key % group.ORDER, element)
    s = Scalar(r)
    labels = []
    for i, (x, verdict) in enumerate(bucket):
        k = s.mul_point(points[i]) if points is not None else s.mul(x)
        tag = hashlib.sha256(b"veilbox-anon-tag|" + k).digest()[:16]
        aead = AESGCM(hashlib.sha256(b"veilbox-anon-key|" + k).digest())
        labels.append(tag + aead.encrypt(_NONCE, bytes([1 if verdict else 0]), aad))
    labels.sort()
    return AnonAnswer(z, b"".join(labels))


# --- bank side ------------------------------------------------------------------------------------------------


class _Client:
    def __init__(self, key: int | None = None) -> None:
        self.key = key if key is not None else group.new_key()
        self._scalar = Scalar(self.key)

    def blind_in_order(self, ids: Sequence[str], domain: bytes) -> list[bytes]:
        items = _items(ids)
        return [self._scalar.mul(group.hash_to_curve(i, domain)) for i in items]


class SizeClient(_Client):
    """The bank's side of psi_size. Keep one instance (its key) per dataset version: the setup is per key."""

    def double_blind(self, server: Sequence[bytes]) -> list[bytes]:
        """Setup: ``R = sort({x(a·t) : t ∈ T})``, the service set re-keyed under the bank's key and shuffled."""
        return sorted(self._scalar.mul_many(server))

    def blind(self, ids: Sequence[str]) -> list[bytes]:
        """Query: ``sort({x(a·H(x)) : x ∈ ids})``; sorted, so the order reveals nothing about the ids."""
        return sorted(self.blind_in_order(ids, SIZE))


class MembersClient(_Client):
    """The bank's side of psi_members (a fresh key per request by default)."""

    def blind(self, ids: Sequence[str]) -> list[bytes]:
        """``x(a·H(x))`` for each id in the caller's order, so `members` can map answers back to ids."""
        return self.blind_in_order(ids, MEMBERS)

    def members(self, ids: Sequence[str], evaluated: Sequence[bytes], filter_blob: bytes) -> list[str]:
        """The ids whose unblinded evaluation ``x(b·H(x))`` has its tag in the service's `members_filter`."""
        if len(evaluated) != len(ids):
            raise InvalidElement("the answer does not have one element per id")
        if len(filter_blob) % 8:
            raise InvalidElement("the filter is not a whole number of 8-byte tags")
        table = np.frombuffer(filter_blob, dtype=">u8").astype(np.uint64)
        unblind = Scalar(group.inverse(self.key))
        mine = tags(MEMBERS, unblind.mul_many(evaluated))
        hit = contains(np.sort(table), mine)
        return [i for i, h in zip(ids, hit, strict=True) if h]


class AnonClient(_Client):
    """The bank's side of one anonymous lookup (a fresh key per call)."""

    def request(self, subject: str) -> bytes:
        """The element ``e = x(a·H(subject))`` to send with the subject's bucket."""
        return self.blind_in_order([subject], ANON)[0]

    def open(self, answer: AnonAnswer, aad: bytes) -> bool | None:
        """The verdict for the subject, or None when the subject is not in the dataset (no label matches)."""
        if len(answer.labels) % LABEL_BYTES:
            raise InvalidElement("the labels are not a whole number of 33-byte labels")
        k = Scalar(group.inverse(self.key)).mul(answer.evaluated)
        tag = hashlib.sha256(b"veilbox-anon-tag|" + k).digest()[:16]
        aead = AESGCM(hashlib.sha256(b"veilbox-anon-key|" + k).digest())
        for i in range(0, len(answer.labels), LABEL_BYTES):
            label = answer.labels[i:i + LABEL_BYTES]
            if label[:16] == tag:
                try:
                    plain = aead.decrypt(_NONCE, label[16:], aad)
                except InvalidTag:
                    raise InvalidElement("the matching label does not authenticate") from None
                return plain == b"\x01"
        return None


__all__ = ["ANON", "ELEMENT_BYTES", "LABEL_BYTES", "MEMBERS", "SIZE", "AnonAnswer", "AnonClient", "MembersClient",
           "SizeClient", "anon_answer", "bucket_hashes", "bucket_of", "choose_bits", "evaluate", "evaluate_ids",
           "members_filter", "padded_size", "server_set", "size_count", "size_table", "tag64", "tags"]
