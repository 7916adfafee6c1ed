"""Archived audit segments: signed, chained across segments and into the live log; an edited, dropped or
reordered row, a dropped segment and an edited manifest are each caught, naming the first bad segment and seq."""

import datetime as dt
import json

import pytest

from gateway import _tables as t
from gateway.archive import archive, verify_archive
from gateway.keys import Keys
from gateway.retention import ACCESS_AUDIT, RETENTION, declared
from tests.unit.gateway.audit_logs import audit_template, copied_log
from vocab.actions import AuditAction

N, EVERY, SEG = 23, 5, 5


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return audit_template(tmp_path_factory.mktemp("archive"), N, EVERY)


@pytest.fixture
def log(template, tmp_path):
    yield from copied_log(template, tmp_path, EVERY)


@pytest.fixture
def archived(log, tmp_path):
    root = tmp_path / "archive" / "audit"
    made = archive(log, root, upto_seq=N, segment_size=SEG)
    assert [(m["first_seq"], m["last_seq"]) for m in made] == [(1, 5), (6, 10), (11, 15), (16, 20), (21, 23)]
    return log, root, made


def _stem(m):
    return m["file"].removesuffix(".jsonl")


def test_archive_and_verify_across_segments_and_into_the_live_log(archived):
    log, root, made = archived
    r = verify_archive(root, log.keys.public, log)
    assert (r.ok, r.segments, r.entries, r.last_seq) == (True, 5, N, N), r
    archived_entry = [e for e in log.iter_all() if e["action"] == AuditAction.AUDIT_ARCHIVE]
    assert json.loads(archived_entry[0]["details"]) == {"segments": 5, "first_seq": 1, "last_seq": N, "dir": "audit"}
    assert sum(1 for _ in log.iter_all()) == N + 1  # the live log keeps every entry
    more = archive(log, root, upto_seq=10_000, segment_size=SEG)  # the next run continues the chain
    assert [(m["first_seq"], m["last_seq"]) for m in more] == [(N + 1, N + 1)]
    assert archive(log, root, upto_seq=N) == []  # nothing left below the bound
    assert verify_archive(root, log.keys.public, log).ok
    assert verify_archive(root, Keys.generate().public).first_bad_segment == _stem(made[0])  # another key


def test_archive_by_date_stops_at_the_bound(log, tmp_path):
    root = tmp_path / "arch"
    assert archive(log, root, before=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)) == []
    made = archive(log, root, before=dt.datetime.now(dt.UTC) + dt.timedelta(days=1), segment_size=100)
    assert [(m["first_seq"], m["last_seq"]) for m in made] == [(1, N)]
    with pytest.raises(ValueError):
        archive(log, root, upto_seq=3, before=dt.datetime.now(dt.UTC))


def _rows(root, m):
    return (root / m["file"]).read_text().splitlines()


def _write(root, m, rows):
    (root / m["file"]).write_text("".join(r + "\n" for r in rows))


def test_an_edited_row_is_caught_at_its_segment_and_seq(archived):
    log, root, made = archived
    rows = _rows(root, made[1])
    r = json.loads(rows[2])
    r["actor"] = "someone_else"
    rows[2] = json.dumps(r, sort_keys=True, separators=(",", ":"))
    _write(root, made[1], rows)
    rep = verify_archive(root, log.keys.public, log)
    assert (rep.ok, rep.first_bad_segment, rep.first_bad_seq, rep.segments) == (False, _stem(made[1]), 8, 1)
    assert "hash" in rep.reason


def test_a_dropped_segment_is_caught(archived):
    log, root, made = archived
    (root / made[2]["file"]).unlink()
    (root / (_stem(made[2]) + ".manifest.json")).unlink()
    rep = verify_archive(root, log.keys.public, log)
    assert (rep.ok, rep.first_bad_segment, rep.first_bad_seq) == (False, _stem(made[3]), 11)
    assert "missing" in rep.reason


def test_the_first_segment_dropped_is_caught(archived):
    log, root, made = archived
    (root / made[0]["file"]).unlink()
    (root / (_stem(made[0]) + ".manifest.json")).unlink()
    rep = verify_archive(root, log.keys.public)
    assert (rep.ok, rep.first_bad_segment, rep.first_bad_seq) == (False, _stem(made[1]), 1)


def test_reordered_rows_are_caught(archived):
    log, root, made = archived
    rows = _rows(root, made[3])
    rows[1], rows[3] = rows[3], rows[1]
    _write(root, made[3], rows)
    rep = verify_archive(root, log.keys.public, log)
    assert (rep.ok, rep.first_bad_segment, rep.first_bad_seq) == (False, _stem(made[3]), 17)


def test_a_dropped_row_is_caught(archived):
    log, root, made = archived
    rows = _rows(root, made[4])
    _write(root, made[4], rows[:-1])
    rep = verify_archive(root, log.keys.public, log)
    assert (rep.ok, rep.first_bad_segment) == (False, _stem(made[4]))


def test_swapped_segment_contents_are_caught(archived):
    log, root, made = archived
    a, b = root / made[1]["file"], root / made[2]["file"]
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    rep = verify_archive(root, log.keys.public, log)
    assert (rep.ok, rep.first_bad_segment, rep.first_bad_seq) == (False, _stem(made[1]), 6)


def test_an_edited_manifest_is_caught(archived):
    log, root, made = archived
    p = root / (_stem(made[2]) + ".manifest.json")
    m = json.loads(p.read_text())
    m["last_seq"] = 14
    p.write_text(json.dumps(m))
    rep = verify_archive(root, log.keys.public, log)
    assert (rep.ok, rep.first_bad_segment, rep.first_bad_seq) == (False, _stem(made[2]), 11)
    assert "signature" in rep.reason


def test_a_live_log_that_no_longer_continues_the_archive_is_caught(archived):
    log, root, _ = archived
    with log.engine.begin() as conn:
        conn.execute(t.audit_entries.update().where(t.audit_entries.c.seq == N).values(hash="0" * 64))
    rep = verify_archive(root, log.keys.public, log)
    assert (rep.ok, rep.first_bad_segment, rep.first_bad_seq) == (False, "live", N)


def test_declared_retention():
    table = declared(365)
    assert all(table[c.name] >= 20 * 365 for c in RETENTION if c.name != ACCESS_AUDIT)
    assert table[ACCESS_AUDIT] == 365
    with pytest.raises(ValueError):
        declared(182)
