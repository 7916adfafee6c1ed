"""mpc.psi: correctness of the three protocols and what each party can and cannot compute."""

import hashlib

import numpy as np
import pytest

from mpc.errors import MpcError
from mpc.psi import group
from mpc.psi import protocol as p

SERVICE = [str(i) for i in range(100, 160)]  # 60 dataset ids
BANK = [str(i) for i in range(140, 170)]  # 30 bank ids, 20 of them in the dataset


def test_scalar_multiplication_commutes_and_inverts():
    x = group.hash_to_curve(b"42")
    a, b = group.new_key(), group.new_key()
    assert group.mul(a, group.mul(b, x)) == group.mul(b, group.mul(a, x)) == group.mul(a * b % group.ORDER, x)
    assert group.mul(group.inverse(a), group.mul(a, x)) == x


def test_invalid_elements_are_refused():
    with pytest.raises(group.InvalidElement) as e:
        group.validate(b"\x00" * 31)
    assert e.value.code == "CIPHERTEXT_INVALID"
    off_curve = next(hashlib.sha256(bytes([i])).digest() for i in range(256)
                     if not _on_curve(hashlib.sha256(bytes([i])).digest()))
    with pytest.raises(group.InvalidElement):
        group.validate(off_curve)
    with pytest.raises(group.InvalidElement):
        group.validate(b"\xff" * 32)  # coordinate above p
    with pytest.raises(group.InvalidElement):
        group.split(b"\x01" * 33)


def _on_curve(x):
    try:
        group.validate(x)
        return True
    except group.InvalidElement:
        return False


def test_padded_size_hides_the_exact_count():
    assert p.padded_size(1) == 16 and p.padded_size(17) == 32 and p.padded_size(1000) == 1024
    for n in (1, 50, 999, 10_000_001):
        assert n <= p.padded_size(n) <= n + n // 16 + 16


def _server(domain):
    b = group.new_key()
    t = p.server_set(b, p.evaluate_ids(b, SERVICE, domain), domain)
    return b, t


def test_psi_size_counts_the_intersection_on_the_service_side():
    b, t = _server(p.SIZE)
    assert len(t) == p.padded_size(len(SERVICE)) and t == sorted(t)
    bank = p.SizeClient()
    table = p.size_table(t, bank.double_blind(t))
    q = bank.blind(BANK)
    assert p.size_count(b, q, table) == 20
    # the query is sorted (shuffled) and under the bank's key: no element equals the service's own evaluation
    own = set(p.evaluate_ids(b, BANK, p.SIZE))
    assert not own & set(q) and q == sorted(q)
    # the service's view of a match, x(ab·H(x)), is not x(b·H(y)) for any dataset id: it cannot say which
    assert not set(p.evaluate(b, q)) & set(t)


def test_psi_size_refuses_repeats_and_a_wrong_sized_setup():
    b, t = _server(p.SIZE)
    bank = p.SizeClient()
    r = bank.double_blind(t)
    with pytest.raises(group.InvalidElement):
        p.size_table(t, r[:-1])
    with pytest.raises(group.InvalidElement):
        p.size_table(t, [*r[:-1], r[0]])
    q = bank.blind(BANK)
    with pytest.raises(MpcError) as e:
        p.size_count(b, [*q, q[0]], p.size_table(t, r))
    assert e.value.code == "INVALID_REQUEST"


def test_psi_members_finds_the_present_ids_only():
    b, t = _server(p.MEMBERS)
    f = p.members_filter(t)
    bank = p.MembersClient()
    e = bank.blind(BANK)
    got = bank.members(BANK, p.evaluate(b, e), f)
    assert got == [str(i) for i in range(140, 160)]
    # another service key: nothing matches (the answer is bound to the filter's key)
    assert p.MembersClient().members(BANK, p.evaluate(group.new_key(), p.MembersClient().blind(BANK)), f) == []


def test_psi_members_filter_reveals_no_dataset_id():
    """The filter holds tags of x(b·H(y)); without b nobody recomputes them from a guessed id."""
    _b, t = _server(p.MEMBERS)
    f = set(np.frombuffer(p.members_filter(t), dtype=">u8").tolist())
    guesses = [p.tag64(p.MEMBERS, group.hash_to_curve(s.encode(), p.MEMBERS)) for s in SERVICE]
    assert not f & set(guesses)


def test_buckets_hold_at_least_k_subjects():
    subjects = [str(i) for i in range(5000)]
    h = p.bucket_hashes(subjects)
    bits = p.choose_bits(h, 64)
    assert bits is not None and bits >= 4
    counts = np.bincount((h >> np.uint64(64 - bits)).astype(np.int64), minlength=1 << bits)
    assert counts.min() >= 64
    assert p.choose_bits(h, 6000) is None
    assert p.bucket_of("7", bits) == int(p.bucket_hashes(["7"])[0]) >> (64 - bits)


def _anon(subjects, verdicts):
    b = group.new_key()
    xs = p.evaluate_ids(b, subjects, p.ANON)
    return b, list(zip(xs, verdicts, strict=True))


def test_anonymous_lookup_opens_exactly_the_bank_subject():
    subjects = [f"s{i}" for i in range(32)]
    verdicts = [i % 3 == 0 for i in range(32)]
    b, bucket = _anon(subjects, verdicts)
    for i in (0, 1, 5, 9):
        c = p.AnonClient()
        ans = p.anon_answer(b, c.request(subjects[i]), bucket, b"aad")
        assert c.open(ans, b"aad") is verdicts[i]
        assert len(ans.labels) == 32 * p.LABEL_BYTES
    c = p.AnonClient()
    assert c.open(p.anon_answer(b, c.request("absent"), bucket, b"aad"), b"aad") is None


def test_anonymous_lookup_other_labels_stay_closed():
    """A bank holding last call's key material for another subject opens nothing in a new answer: every call
    re-keys the labels (fresh r), so the bank can read only the subject it asked about."""
    subjects = [f"s{i}" for i in range(16)]
    b, bucket = _anon(subjects, [True] * 16)
    c1 = p.AnonClient()
    a1 = p.anon_answer(b, c1.request("s3"), bucket, b"x")
    assert c1.open(a1, b"x") is True
    c2 = p.AnonClient()
    a2 = p.anon_answer(b, c2.request("s4"), bucket, b"x")
    # replaying call 1's client and evaluation against call 2's labels finds no label
    assert c1.open(p.AnonAnswer(a1.evaluated, a2.labels), b"x") is None
    # the labels of a call match none of the previous call's
    tags1 = {a1.labels[i:i + 16] for i in range(0, len(a1.labels), p.LABEL_BYTES)}
    tags2 = {a2.labels[i:i + 16] for i in range(0, len(a2.labels), p.LABEL_BYTES)}
    assert not tags1 & tags2


def test_anonymous_lookup_binds_the_question():
    subjects = [f"s{i}" for i in range(8)]
    b, bucket = _anon(subjects, [False] * 8)
    c = p.AnonClient()
    ans = p.anon_answer(b, c.request("s1"), bucket, b"question-1")
    with pytest.raises(group.InvalidElement):
        c.open(ans, b"question-2")


def test_anonymous_lookup_refuses_a_hostile_element():
    b, bucket = _anon(["s1"], [True])
    with pytest.raises(group.InvalidElement):
        p.anon_answer(b, b"\xff" * 32, bucket, b"")


def test_anonymous_lookup_with_decoded_points_answers_the_same():
    subjects = [f"s{i}" for i in range(8)]
    verdicts = [i % 2 == 0 for i in range(8)]
    b, bucket = _anon(subjects, verdicts)
    points = [group.decode(x) for x, _ in bucket]
    for i in (2, 3):
        c = p.AnonClient()
        assert c.open(p.anon_answer(b, c.request(subjects[i]), bucket, b"q", points), b"q") is verdicts[i]
    with pytest.raises(ValueError):
        p.anon_answer(b, p.AnonClient().request("s1"), bucket, b"q", points[:-1])


def test_parallel_setup_equals_the_serial_one(monkeypatch):
    monkeypatch.setattr(p, "PARALLEL_MIN", 10)
    ids = [str(i) for i in range(40)]
    key = group.new_key()
    assert p.evaluate_ids(key, ids, p.SIZE, processes=2) == p.evaluate_ids(key, ids, p.SIZE)
