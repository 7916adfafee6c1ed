"""The preview's own audit entry over real HTTP (issue 12): a preview reads only the mock, so the caller's own
entry for two previews that differ only in a literal is the same, and it carries no data-dependent field (no ε,
no output digest, no subject, no count) — only the request's method, route, status and duration."""

from __future__ import annotations

import json

from tests.system.http.flows.test_queries_http import _last_seq

SQL = "SELECT district, COUNT(*) AS n FROM tax_income WHERE monthly_income >= {} GROUP BY district"
ENTRY_KEYS = {"seq", "ts", "actor", "role", "action", "agreement_id", "dataset", "decision", "code", "epsilon",
              "delta", "output_digest", "subject_hash", "details", "hash", "prev_hash"}
VARYING = {"seq", "ts", "hash", "prev_hash"}


def _own_preview_entries(parties, since: int) -> list[dict]:
    out = [e for e in parties.operator.audit(since=since, limit=1000)["entries"]
           if e["seq"] > since and e["action"] == "query.preview"]
    for e in out:
        if isinstance(e["details"], str):
            e["details"] = json.loads(e["details"])
    return out


def test_a_previews_own_entry_is_the_same_for_two_literals_and_holds_no_data(parties, monkeypatch):
    """The data worker is made to refuse every request (a seam in this process): the previews do not use it."""
    from sandbox.engine import worker as engine_worker

    def execute(self, request):
        raise AssertionError("a preview must not query the data")

    monkeypatch.setattr(engine_worker.QueryWorker, "execute", execute)
    ag = parties.agreement()
    since = _last_seq(parties)
    low = parties.operator.preview_query(ag["id"], SQL.format(1000), 0.5)
    high = parties.operator.preview_query(ag["id"], SQL.format(60000), 0.5)
    assert low["canonical_sql"] != high["canonical_sql"]  # two questions, both answered on the mock
    entries = _own_preview_entries(parties, since)
    assert len(entries) == 2
    for e in entries:
        assert set(e) <= ENTRY_KEYS and set(e["details"]) == {"method", "path", "status", "ms"}
        assert (e["actor"], e["role"], e["decision"], e["code"]) == ("risk-lab", "operator", "allow", None)
        assert (e["agreement_id"], e["dataset"]) == (ag["id"], "tax_income")
        assert e["epsilon"] is None and e["delta"] is None  # nothing charged, nothing recorded as spent
        assert e["output_digest"] is None and e["subject_hash"] is None
        assert e["details"]["status"] == 200 and e["details"]["path"] == "/queries/preview"
    same = [({k: v for k, v in e.items() if k not in VARYING | {"details"}},
             {k: v for k, v in e["details"].items() if k != "ms"}) for e in entries]
    assert same[0] == same[1]
