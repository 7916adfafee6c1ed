"""Anchoring (存证): the signed head leaves for a file or a webhook only when it advanced, webhook anchors carry an
HMAC and are retried with backoff (every attempt audited), and a chain is checked against anchors: a history
rewritten with the signing key, a truncated log and an edited anchor are each caught at their anchor and seq."""

import http.server
import json
import sqlite3
import threading
from typing import ClassVar

import pytest
from sqlalchemy import select

from gateway import _tables as t
from gateway.anchoring import (
    SIGNATURE_HEADER,
    Anchorer,
    FileSink,
    WebhookSink,
    check_anchors,
    read_anchors,
    webhook_signature,
)
from gateway.audit import GENESIS, AuditEvent, _sig_message, entry_hash
from gateway.settings import Settings
from tests.unit.gateway.audit_logs import audit_template, copied_log
from vocab.actions import AuditAction

N, EVERY = 12, 5

KEY = b"k" * 32


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return audit_template(tmp_path_factory.mktemp("anchor"), N, EVERY)


@pytest.fixture
def log(template, tmp_path):
    yield from copied_log(template, tmp_path, EVERY)


def _anchor_entries(log):
    return [e for e in log.iter_all() if e["action"] == AuditAction.AUDIT_ANCHOR]


def test_file_anchor_only_when_the_head_advanced_and_on_schedule(log, tmp_path):
    now = [0.0]
    sink = FileSink(tmp_path / "out" / "anchors.jsonl")
    a = Anchorer(log, sink, every_s=60, clock=lambda: now[0], sleep=lambda s: None)
    assert a.tick().outcome == "sent"
    assert a.tick() is None  # not due
    now[0] = 61
    assert a.tick().outcome == "unchanged"  # only anchoring's own entry since: nothing to anchor
    log.append(AuditEvent(action="query.run"))
    now[0] = 122
    assert a.tick().outcome == "sent"
    lines = [json.loads(x) for x in sink.path.read_text().splitlines()]
    assert [x["seq"] for x in lines] == [N, N + 2]
    assert lines[0]["key_id"] == log.keys.key_id and lines[0]["alg"] == "sha256"
    entries = _anchor_entries(log)
    assert [json.loads(e["details"])["outcome"] for e in entries] == ["sent", "sent"]
    assert log.verify().ok
    assert check_anchors(log.iter_all(), read_anchors(sink.path), log.keys.public, "sha256").ok


class _Sink(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list] = []
    fail_first = 0

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.headers[SIGNATURE_HEADER], body))
        if type(self).fail_first > 0:
            type(self).fail_first -= 1
            self.send_response(503)
        else:
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_sink():
    _Sink.received, _Sink.fail_first = [], 0
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    th = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/anchors", _Sink
    srv.shutdown()
    srv.server_close()


def test_webhook_receives_hmac_signed_anchors_retried_with_backoff(log, http_sink):
    url, handler = http_sink
    handler.fail_first = 2
    slept = []
    a = Anchorer(log, WebhookSink(url, KEY), attempts=4, backoff_s=2.0, sleep=slept.append)
    out = a.anchor()
    assert (out.outcome, out.attempts, out.seq) == ("sent", 3, N)
    assert slept == [2.0, 4.0]
    assert len(handler.received) == 3
    sig, body = handler.received[-1]
    assert sig == webhook_signature("sha256", KEY, body) and sig.startswith("hmac-sha256=")
    assert sig != webhook_signature("sha256", b"x" * 32, body)
    assert json.loads(body)["seq"] == N
    outcomes = [json.loads(e["details"])["outcome"] for e in _anchor_entries(log)]
    assert outcomes == ["failed", "failed", "sent"]  # every attempt audited
    assert [e["decision"] for e in _anchor_entries(log)] == ["error", "error", "allow"]


def test_webhook_down_gives_up_after_its_attempts(log, http_sink):
    url, handler = http_sink
    handler.fail_first = 10
    out = Anchorer(log, WebhookSink(url, KEY), attempts=3, sleep=lambda s: None).anchor()
    assert (out.outcome, out.attempts) == ("failed", 3) and "503" in out.error
    assert len(_anchor_entries(log)) == 3


def _rewrite_from(log, con, seq):
    """Someone holding the signing key edits entry ``seq`` and re-chains, re-checkpoints and re-signs everything
    after it: the live verification cannot tell."""
    cols = [r[1] for r in con.execute("PRAGMA table_info(audit_entries)")]
    rows = [dict(zip(cols, r, strict=True)) for r in con.execute("SELECT * FROM audit_entries ORDER BY seq")]
    prev = GENESIS
    con.execute("BEGIN")
    for r in rows:
        if r["seq"] == seq:
            r["actor"] = "someone_else"
        r["prev_hash"] = prev
        r["hash"] = entry_hash("sha256", r)
        prev = r["hash"]
        con.execute("UPDATE audit_entries SET actor=?, prev_hash=?, hash=? WHERE seq=?",
                    (r["actor"], r["prev_hash"], r["hash"], r["seq"]))
        sig = log.keys.signing.sign(_sig_message(r["seq"], r["hash"])).hex()
        con.execute("UPDATE audit_checkpoints SET hash=?, signature=? WHERE seq=?", (r["hash"], sig, r["seq"]))
        con.execute("UPDATE audit_head SET hash=?, signature=? WHERE seq=?", (r["hash"], sig, r["seq"]))
    con.execute("COMMIT")


def test_rewritten_history_is_caught_against_the_anchors(log, tmp_path):
    sink = FileSink(tmp_path / "anchors.jsonl")
    a = Anchorer(log, sink)
    a.anchor()  # head N
    for _ in range(3):
        log.append(AuditEvent(action="query.run"))
    a.anchor()  # head N + 4
    con = sqlite3.connect(log.engine.url.database, isolation_level=None)
    _rewrite_from(log, con, 7)
    assert log.verify().ok  # the rewrite re-signed everything: the live check passes
    r = check_anchors(log.iter_all(), read_anchors(sink.path), log.keys.public, "sha256")
    assert not r.ok and (r.first_bad_seq, r.bad_anchor_line) == (N, 1) and "rewritten" in r.reason


def test_truncated_log_is_caught_against_the_anchors(log, tmp_path):
    sink = FileSink(tmp_path / "anchors.jsonl")
    Anchorer(log, sink).anchor()
    entries = [e for e in log.iter_all() if e["seq"] <= N - 2]
    r = check_anchors(entries, read_anchors(sink.path), log.keys.public, "sha256")
    assert not r.ok and r.first_bad_seq == N and "truncated" in r.reason


@pytest.mark.parametrize("field", ["hash", "seq", "signature"])
def test_an_edited_anchor_is_caught(log, tmp_path, field):
    sink = FileSink(tmp_path / "anchors.jsonl")
    a = Anchorer(log, sink)
    a.anchor()
    log.append(AuditEvent(action="query.run"))
    a.anchor()
    lines = sink.path.read_text().splitlines()
    d = json.loads(lines[1])
    d[field] = d[field] - 1 if field == "seq" else ("0" if d[field][0] != "0" else "1") + d[field][1:]
    lines[1] = json.dumps(d)
    sink.path.write_text("\n".join(lines) + "\n")
    r = check_anchors(log.iter_all(), read_anchors(sink.path), log.keys.public, "sha256")
    assert not r.ok and r.bad_anchor_line == 2 and "signature" in r.reason


def test_a_broken_chain_is_reported_with_the_anchors(log, tmp_path):
    sink = FileSink(tmp_path / "anchors.jsonl")
    Anchorer(log, sink).anchor()
    with log.engine.begin() as conn:
        conn.execute(t.audit_entries.update().where(t.audit_entries.c.seq == 4).values(actor="x"))
    r = check_anchors(log.iter_all(), read_anchors(sink.path), log.keys.public, "sha256")
    assert not r.ok and r.first_bad_seq == 4


def test_settings_refuse_unsafe_anchoring_and_short_retention(tmp_path):
    ok = Settings(home=tmp_path, anchor_sink="https://evidence.example/anchors", anchor_hmac_key="k" * 32)
    assert ok.anchor_every_s == 3600
    for kw in ({"anchor_sink": "https://evidence.example/a"},  # no HMAC key
               {"anchor_sink": "https://evidence.example/a", "anchor_hmac_key": "short"},
               {"anchor_sink": "http://evidence.example/a", "anchor_hmac_key": "k" * 32},  # plain http off-host
               {"anchor_sink": "file:relative/anchors.jsonl"},
               {"anchor_sink": "ftp://evidence.example/a"},
               {"audit_retention_days": 182}):
        with pytest.raises(ValueError, match=r"VEILBOX_A|anchoring|retention"):
            Settings(home=tmp_path, **kw)
    assert Settings(home=tmp_path, audit_retention_days=183).audit_retention_days == 183


def test_the_worker_schedules_anchoring_only_with_a_sink(log, tmp_path):
    from gateway.anchoring import scheduled

    assert scheduled(log, Settings(home=tmp_path)) is None
    a = scheduled(log, Settings(home=tmp_path, anchor_sink=f"file:{tmp_path / 'a.jsonl'}", anchor_every_s=5))
    assert a is not None and a.every_s == 5 and a.due()
    with log.engine.connect() as conn:
        head = conn.execute(select(t.audit_head.c.seq)).scalar()
    assert a.anchor().seq == head


def test_the_scheduled_tick_runs_off_the_worker_thread(log, tmp_path):
    sink = FileSink(tmp_path / "a.jsonl")
    a = Anchorer(log, sink, every_s=3600)
    a.tick_in_background()
    assert a._busy.acquire(timeout=120)  # the background anchoring finished and let go
    a._busy.release()
    assert len(sink.path.read_text().splitlines()) == 1
    a.tick_in_background()  # not due again within the hour: nothing sent
    assert a._busy.acquire(timeout=120)
    assert len(sink.path.read_text().splitlines()) == 1
