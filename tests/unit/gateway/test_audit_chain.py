"""Tamper evidence of the audit log: any flipped byte, dropped, swapped, inserted or re-chained entry is
caught, at its seq (or, for a re-chained tail, inside the last checkpoint interval)."""

import shutil
import sqlite3
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog.store import make_engine
from gateway import _tables as t
from gateway.audit import AuditEvent, AuditLog, entry_hash
from gateway.keys import Keys

N, EVERY = 23, 5
KEYS = Keys.generate()  # the log's signing key (in memory: the store's keyring is not under test here)
STRING_FIELDS = ("ts", "actor", "role", "action", "agreement_id", "dataset", "decision", "code", "epsilon",
                 "output_digest", "subject_hash", "details", "prev_hash", "hash")


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    d = tmp_path_factory.mktemp("audit")
    e = make_engine(f"sqlite:///{d / 'tpl.db'}")
    t.metadata.create_all(e)
    log = AuditLog(e, KEYS, "sha256", EVERY)
    for i in range(N):
        log.append(AuditEvent(actor=f"user{i % 3}", role="operator", action="query.run", agreement_id="a1",
                              dataset="tax_income", epsilon="1/10", details={"i": i}))
    e.dispose()
    con = sqlite3.connect(d / "tpl.db")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return d


def fresh(template, tmp_path, alg="sha256"):
    p = tmp_path / f"copy-{uuid.uuid4().hex}.db"  # fresh name: no stale WAL from an earlier example
    shutil.copy(template / "tpl.db", p)
    e = make_engine(f"sqlite:///{p}")
    return AuditLog(e, KEYS, alg, EVERY), sqlite3.connect(p, isolation_level=None)


def test_untouched_log_verifies(template, tmp_path):
    log, _ = fresh(template, tmp_path)
    r = log.verify()
    assert (r.ok, r.entries, r.first_bad_seq) == (True, N, None)


HYP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@HYP
@given(seq=st.integers(1, N), field=st.sampled_from(STRING_FIELDS), pos=st.integers(0, 200), ch=st.characters(
    min_codepoint=33, max_codepoint=126))
def test_any_flipped_byte_is_caught_at_its_seq(template, tmp_path, seq, field, pos, ch):
    log, con = fresh(template, tmp_path)
    (val,) = con.execute(f"SELECT {field} FROM audit_entries WHERE seq=?", (seq,)).fetchone()
    val = val or ""
    i = pos % (len(val) + 1)
    new = val[:i] + ch + val[i + 1:]
    if new == val:
        new = val[:i] + chr(ord(ch) ^ 1) + val[i + 1:]
    con.execute(f"UPDATE audit_entries SET {field}=? WHERE seq=?", (new, seq))
    r = log.verify()
    assert not r.ok and r.first_bad_seq == seq


@HYP
@given(seq=st.integers(1, N))
def test_any_dropped_row_is_caught(template, tmp_path, seq):
    log, con = fresh(template, tmp_path)
    con.execute("DELETE FROM audit_entries WHERE seq=?", (seq,))
    r = log.verify()
    assert not r.ok and r.first_bad_seq == seq


@HYP
@given(a=st.integers(1, N), b=st.integers(1, N))
def test_any_swap_is_caught_at_the_first_swapped_seq(template, tmp_path, a, b):
    if a == b:
        return
    log, con = fresh(template, tmp_path)
    con.execute("UPDATE audit_entries SET seq=-1 WHERE seq=?", (a,))
    con.execute("UPDATE audit_entries SET seq=? WHERE seq=?", (a, b))
    con.execute("UPDATE audit_entries SET seq=? WHERE seq=-1", (b,))
    r = log.verify()
    assert not r.ok and r.first_bad_seq == min(a, b)


def test_inserted_row_is_caught(template, tmp_path):
    log, con = fresh(template, tmp_path)
    con.execute("UPDATE audit_entries SET seq = seq + 1000 WHERE seq >= 10")
    con.execute("UPDATE audit_entries SET seq = seq - 999 WHERE seq >= 1000")
    cols = ",".join(c.name for c in t.audit_entries.c)
    con.execute(f"INSERT INTO audit_entries ({cols}) SELECT {cols.replace('seq', '10', 1)} FROM audit_entries "
                "WHERE seq = 9")
    r = log.verify()
    assert not r.ok and r.first_bad_seq == 10


def test_truncated_tail_is_caught_by_the_signed_head(template, tmp_path):
    log, con = fresh(template, tmp_path)
    con.execute("DELETE FROM audit_entries WHERE seq > 20")
    r = log.verify()
    assert not r.ok and r.first_bad_seq == 21


@pytest.mark.parametrize("k", [1, 7, 12, 22])
def test_rechained_tail_without_the_key_is_caught(template, tmp_path, k):
    """An attacker edits entry k and recomputes every later hash: the chain is consistent again, but the next
    signed checkpoint (or the signed head) no longer matches."""
    log, con = fresh(template, tmp_path)
    con.execute("UPDATE audit_entries SET actor='mallory' WHERE seq=?", (k,))
    rows = [dict(r) for r in _dict_rows(con)]
    prev = rows[k - 2]["hash"] if k > 1 else "0" * 64
    for row in rows[k - 1:]:
        row["prev_hash"] = prev
        row["hash"] = entry_hash("sha256", row)
        con.execute("UPDATE audit_entries SET prev_hash=?, hash=? WHERE seq=?", (row["prev_hash"], row["hash"],
                                                                               row["seq"]))
        prev = row["hash"]
    r = log.verify()
    assert not r.ok
    assert k - EVERY < r.first_bad_seq <= k


def test_forged_checkpoint_signature(template, tmp_path):
    log, con = fresh(template, tmp_path)
    con.execute("UPDATE audit_checkpoints SET signature=? WHERE seq=10", ("00" * 64,))
    r = log.verify()
    assert not r.ok and r.first_bad_seq == 6


def test_sm3_chain(template, tmp_path):
    d = tmp_path / "sm3"
    d.mkdir()
    e = make_engine(f"sqlite:///{d / 'a.db'}")
    t.metadata.create_all(e)
    log = AuditLog(e, KEYS, "sm3", 2)
    for i in range(5):
        log.append(AuditEvent(action=f"a{i}"))
    assert log.verify().ok
    with e.begin() as c:
        c.execute(t.audit_entries.update().where(t.audit_entries.c.seq == 3).values(action="x"))
    assert log.verify().first_bad_seq == 3


def _dict_rows(con):
    con.row_factory = sqlite3.Row
    rows = con.execute("SELECT * FROM audit_entries ORDER BY seq").fetchall()
    con.row_factory = None
    return rows


def test_an_unsigned_tail_is_caught(template, tmp_path):
    """Rows appended after the signed head (copied, correctly chained, but never signed) are reported."""
    log, con = fresh(template, tmp_path)
    cols = ",".join(c.name for c in t.audit_entries.c)
    con.execute(f"INSERT INTO audit_entries ({cols}) SELECT {cols.replace('seq', 'seq + 1', 1)} FROM audit_entries "
                f"WHERE seq = {N}")
    r = log.verify()
    assert not r.ok and r.first_bad_seq == N + 1 and "without a signature" in (r.reason or "")


def test_verification_during_appends_never_reports_a_break(template, tmp_path):
    """A busy log is verified up to the signed head it read first; concurrent appends are not mistaken for a
    tampered tail."""
    import threading

    log, _ = fresh(template, tmp_path)
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set() and i < 400:
            log.append(AuditEvent(actor="busy", role="operator", action="query.run", details={"i": i}))
            i += 1

    th = threading.Thread(target=writer)
    th.start()
    try:
        reports = [log.verify() for _ in range(25)]
    finally:
        stop.set()
        th.join()
    assert all(r.ok for r in reports), [r for r in reports if not r.ok][:1]
    assert log.verify().ok
