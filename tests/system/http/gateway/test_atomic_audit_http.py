"""Every state change commits with its audit entry, or neither does (`gateway.journal`), on SQLite and PostgreSQL.

Each test drives a real gateway and fails one transaction on purpose, either *inside* it, where its audit entry is
written (the disk is full: ``OSError(ENOSPC)``), or *at its commit* (the store refuses the commit: an
``OperationalError``). Afterwards the change and its entry are both there or both absent — the ledger, the job,
the meters, the dataset, the agreement unchanged and no entry stating the change — and the caller got a stable
``503 UNAVAILABLE`` with ``Retry-After``, never a 500. The retry then succeeds with exactly one entry.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import pytest
from sqlalchemy import Connection, event
from sqlalchemy.exc import OperationalError

import policies
from gateway.audit import AuditEvent, AuditLog
from gateway.services import jobs as jobflow
from gateway.services import leases
from gateway.settings import Settings

pytestmark = pytest.mark.parametrize("store", ["sqlite", "postgresql"])

MODES = ("write", "commit")
SQL = "SELECT district, COUNT(*) AS n FROM tax_income GROUP BY district"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """No background worker: a charged job stays where the test left it."""
    return settings.model_copy(update={"worker": False})


class Fault:
    """Fail the next transaction that appends an entry ``match`` accepts: inside it, where the entry is written
    (``write``: the disk is full), or at its commit (``commit``: the store refuses it). Fires once."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, engine: Any, mode: str,
                 match: Callable[[AuditEvent], bool]) -> None:
        self.fired = 0
        original = AuditLog.append_in

        def append_in(log: AuditLog, conn: Connection, ev: AuditEvent) -> dict[str, Any]:
            if not self.fired and match(ev):
                self.fired += 1
                if mode == "write":
                    raise OSError(errno.ENOSPC, "No space left on device")
                conn.info["fail_commit"] = True
            return original(log, conn, ev)

        def on_commit(conn: Connection) -> None:
            if conn.info.pop("fail_commit", False):
                raise OperationalError("COMMIT", {}, OSError(errno.ENOSPC, "No space left on device"))

        monkeypatch.setattr(AuditLog, "append_in", append_in)
        event.listen(engine, "commit", on_commit)
        self._remove = lambda: event.remove(engine, "commit", on_commit)


@pytest.fixture
def fault(monkeypatch: pytest.MonkeyPatch, parties: Any) -> Iterator[Callable[..., Fault]]:
    made: list[Fault] = []

    def arm(mode: str, action: str, **details: Any) -> Fault:
        def match(ev: AuditEvent) -> bool:
            return ev.action == action and all(ev.details.get(k) == v for k, v in details.items())
        f = Fault(monkeypatch, parties.service.ctx.engine, mode, match)
        made.append(f)
        return f

    yield arm
    for f in made:
        f._remove()


def _entries(parties: Any, action: str) -> list[dict[str, Any]]:
    rows, _ = parties.service.ctx.audit.entries(limit=100_000)
    out = []
    for e in rows:
        if e["action"] == action:
            d = e["details"]
            out.append({**e, "details": d if isinstance(d, dict) else json.loads(d)})
    return out


def _allowed(parties: Any, action: str) -> list[dict[str, Any]]:
    return [e for e in _entries(parties, action) if e["decision"] == "allow"]


def _refused_unavailable(r: Any) -> None:
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "UNAVAILABLE"
    assert r.headers.get("Retry-After", "").isdigit()


def _post(client: Any, path: str, body: Any = None) -> Any:
    return client._http.request("POST", path, json=body)


def _spent(parties: Any, ag_id: str) -> Fraction:
    return Fraction(parties.owner.budget(ag_id)["exact"]["epsilon_spent"])


def _calls(parties: Any, ag_id: str) -> int:
    return int(parties.owner.usage(ag_id)["totals"]["calls"])


def _verified(parties: Any) -> None:
    assert parties.service.ctx.audit.verify().ok


def _job_spec(eps: str = "0.25") -> dict[str, Any]:
    return {"sql": SQL, "epsilon": eps}


# --- debit and quota bump: a job's submission on an auto-approving agreement ------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_debit_and_its_meters_commit_with_the_submission_entry_or_not_at_all(parties, fault, mode):
    ag = parties.agreement()
    spent, calls = _spent(parties, ag["id"]), _calls(parties, ag["id"])
    f = fault(mode, "job.submit")
    r = _post(parties.operator, "/v1/jobs", {"agreement_id": ag["id"], "kind": "query", "spec": _job_spec()})
    assert f.fired == 1
    _refused_unavailable(r)
    assert parties.operator.jobs() == [] and _spent(parties, ag["id"]) == spent and _calls(parties, ag["id"]) == calls
    assert _allowed(parties, "job.submit") == []  # the refused request's own entry says UNAVAILABLE
    assert [e["code"] for e in _entries(parties, "job.submit")] == ["UNAVAILABLE"]
    job = parties.operator.submit_job(ag["id"], "query", _job_spec())  # the retry: charged once, one entry
    assert job["state"] == "approved" and _spent(parties, ag["id"]) == spent + Fraction(1, 4)
    (entry,) = _allowed(parties, "job.submit")
    assert entry["details"]["job_id"] == job["id"] and entry["epsilon"] == "1/4" and entry["details"]["status"] == 202
    _verified(parties)


@pytest.mark.parametrize("mode", MODES)
def test_an_inline_querys_debit_commits_with_its_charge_entry_or_not_at_all(parties, fault, mode):
    ag = parties.agreement()
    spent = _spent(parties, ag["id"])
    f = fault(mode, "job.charge")
    r = _post(parties.operator, "/v1/queries", {"agreement_id": ag["id"], "sql": SQL, "epsilon": "0.25"})
    assert f.fired == 1
    _refused_unavailable(r)
    assert parties.operator.jobs() == [] and _spent(parties, ag["id"]) == spent
    assert _entries(parties, "job.charge") == [] and _allowed(parties, "query.run") == []
    answer = parties.operator.query(ag["id"], SQL, "0.25")
    assert answer["state"] == "released"
    (charge,) = _entries(parties, "job.charge")
    (run,) = _allowed(parties, "query.run")
    (release,) = _entries(parties, "job.release")
    assert charge["details"]["job_id"] == run["details"]["job_id"] == release["details"]["job_id"] == answer["job_id"]
    assert charge["actor"] == run["actor"] == "risk-lab" and charge["epsilon"] == "1/4"
    assert run["output_digest"] == release["output_digest"] and run["output_digest"].startswith("sha256:")
    _verified(parties)


# --- release: the outcome of an inline query ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_release_commits_with_its_entries_and_a_stranded_charge_is_swept_with_its_own(parties, fault, mode):
    ag = parties.agreement()
    spent = _spent(parties, ag["id"])
    f = fault(mode, "job.release")
    r = _post(parties.operator, "/v1/queries", {"agreement_id": ag["id"], "sql": SQL, "epsilon": "0.25"})
    assert f.fired == 1
    _refused_unavailable(r)
    (job,) = parties.operator.jobs()
    assert job["state"] == "succeeded"  # not released: no output left, and no release entry
    assert _entries(parties, "job.release") == [] and _allowed(parties, "query.run") == []
    (charge,) = _entries(parties, "job.charge")  # the debit is logged: intent, then outcome
    assert charge["details"]["job_id"] == job["id"] and _spent(parties, ag["id"]) == spent + Fraction(1, 4)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)  # the lease ran out: the sweep takes over
    f2 = fault(mode, "job.fail")
    with pytest.raises((OSError, OperationalError)):
        leases.sweep(parties.service.ctx, now=later)
    assert f2.fired == 1 and parties.operator.job(job["id"])["state"] == "succeeded"
    assert _entries(parties, "job.fail") == [] and _entries(parties, "job.incident") == []
    (swept,) = leases.sweep(parties.service.ctx, now=later)
    assert swept.after.state is policies.JobState.FAILED and not swept.refunded
    assert [e["details"]["job_id"] for e in _entries(parties, "job.fail")] == [job["id"]]
    assert [e["details"]["cause"] for e in _entries(parties, "job.incident")] == ["worker.interrupted"]
    assert _spent(parties, ag["id"]) == spent + Fraction(1, 4)  # data was read: charged, with its outcome logged
    _verified(parties)


# --- approval (debit), cancellation (refund), claim and sweep (refund) of a queued job -----------------------------


def _pending_job(parties: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    ag = parties.agreement(approval="owner_each_job")
    job = parties.operator.submit_job(ag["id"], "query", _job_spec())
    assert job["state"] == "pending_approval"
    return ag, job


@pytest.mark.parametrize("mode", MODES)
def test_an_approvals_debit_commits_with_its_entry_or_not_at_all(parties, fault, mode):
    ag, job = _pending_job(parties)
    spent = _spent(parties, ag["id"])
    f = fault(mode, "job.approve")
    r = _post(parties.owner, f"/v1/jobs/{job['id']}/approve", {"spec_hash": job["spec_hash"]})
    assert f.fired == 1
    _refused_unavailable(r)
    assert parties.owner.job(job["id"])["state"] == "pending_approval" and _spent(parties, ag["id"]) == spent
    assert _allowed(parties, "job.approve") == []
    assert parties.owner.approve_job(job["id"], job["spec_hash"])["state"] == "approved"
    (entry,) = _allowed(parties, "job.approve")
    assert entry["details"]["job_id"] == job["id"] and entry["epsilon"] == "1/4"
    assert _spent(parties, ag["id"]) == spent + Fraction(1, 4)
    _verified(parties)


@pytest.mark.parametrize("mode", MODES)
def test_a_refund_commits_with_the_cancellation_entry_or_not_at_all(parties, fault, mode):
    ag, job = _pending_job(parties)
    parties.owner.approve_job(job["id"], job["spec_hash"])
    charged = _spent(parties, ag["id"])
    f = fault(mode, "job.cancel")
    r = _post(parties.operator, f"/v1/jobs/{job['id']}/cancel")
    assert f.fired == 1
    _refused_unavailable(r)
    assert parties.operator.job(job["id"])["state"] == "approved" and _spent(parties, ag["id"]) == charged
    assert _allowed(parties, "job.cancel") == []
    assert parties.operator.cancel_job(job["id"])["state"] == "cancelled"
    (entry,) = _allowed(parties, "job.cancel")
    assert entry["details"]["state"] == "cancelled" and _spent(parties, ag["id"]) == charged - Fraction(1, 4)
    _verified(parties)


@pytest.mark.parametrize("mode", MODES)
def test_the_workers_claim_and_the_sweeps_refund_commit_with_their_entries(parties, fault, mode):
    ag, job = _pending_job(parties)
    parties.owner.approve_job(job["id"], job["spec_hash"])
    charged = _spent(parties, ag["id"])
    ctx = parties.service.ctx
    f = fault(mode, "job.start")
    with pytest.raises((OSError, OperationalError)):
        jobflow.claim_next(ctx, "worker-a")
    assert f.fired == 1 and parties.owner.job(job["id"])["state"] == "approved" and _entries(parties, "job.start") == []
    claimed = jobflow.claim_next(ctx, "worker-a")  # claimed, then the worker dies: its lease runs out
    assert claimed is not None and claimed.id == job["id"]
    assert [e["details"]["job_id"] for e in _entries(parties, "job.start")] == [job["id"]]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    f2 = fault(mode, "job.recover")
    with pytest.raises((OSError, OperationalError)):
        leases.sweep(ctx, now=later)
    assert f2.fired == 1 and parties.owner.job(job["id"])["state"] == "running"
    assert _spent(parties, ag["id"]) == charged and _entries(parties, "job.recover") == []
    (swept,) = leases.sweep(ctx, now=later)
    assert swept.refunded and _spent(parties, ag["id"]) == charged - Fraction(1, 4)
    (entry,) = _entries(parties, "job.recover")
    assert entry["details"] == {"job_id": job["id"], "kind": "query", "reason": "worker.interrupted",
                                "refunded": True, "state": "running"}
    _verified(parties)


# --- registration and agreements ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_registration_commits_with_its_entry_or_leaves_nothing(parties, fault, mode):
    spec = {**parties.tax_spec, "name": "tax_income_copy"}
    data_dir = parties.service.settings.data_dir
    before = sorted(p.name for p in data_dir.iterdir())
    f = fault(mode, "dataset.register")
    r = _post(parties.owner, "/v1/datasets", spec)
    assert f.fired == 1
    _refused_unavailable(r)
    assert "tax_income_copy" not in {d["name"] for d in parties.owner.datasets()}
    assert sorted(p.name for p in data_dir.iterdir()) == before  # no copy left behind
    assert [e for e in _allowed(parties, "dataset.register") if e["dataset"] == "tax_income_copy"] == []
    ds = parties.owner.register_dataset(spec)
    (entry,) = [e for e in _allowed(parties, "dataset.register") if e["dataset"] == "tax_income_copy"]
    assert entry["output_digest"] == entry["details"]["fingerprint"] == ds["fingerprint"]
    _verified(parties)


@pytest.mark.parametrize("mode", MODES)
def test_agreement_transitions_commit_with_their_entries_or_not_at_all(parties, fault, mode):
    doc = {"title": "t", "grantee": "risk-lab", "datasets": ["tax_income"],
           "columns": {"tax_income": ["district", "monthly_income"]}, "purposes": ["credit_risk"],
           "job_kinds": ["query"], "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2030-01-01T00:00:00Z",
           "budget": {"epsilon": 5, "delta": "1e-6"}, "min_group_units": 5, "quotas": {"calls_per_day": 100},
           "approval": "auto_within_budget", "exit": {"on_expiry": "seal_outputs"}}
    f = fault(mode, "agreement.create")
    _refused_unavailable(_post(parties.owner, "/v1/agreements", doc))
    assert f.fired == 1 and parties.owner.agreements() == [] and _allowed(parties, "agreement.create") == []
    ag = parties.owner.propose_agreement(doc)
    (created,) = _allowed(parties, "agreement.create")
    assert created["agreement_id"] == ag["id"] and created["details"]["document_hash"] == ag["document_hash"]
    for action, client, path, state_before in (
            ("agreement.accept", parties.operator, "accept", "proposed"),
            ("agreement.suspend", parties.owner, "suspend", "active"),
            ("agreement.revoke", parties.owner, "revoke", "suspended")):
        f = fault(mode, action)
        _refused_unavailable(_post(client, f"/v1/agreements/{ag['id']}/{path}"))
        assert f.fired == 1 and parties.owner.agreement(ag["id"])["state"] == state_before
        assert _allowed(parties, action) == []
        client.request("POST", f"/v1/agreements/{ag['id']}/{path}")
        assert [e["agreement_id"] for e in _allowed(parties, action)] == [ag["id"]]
    assert parties.owner.agreement(ag["id"])["state"] == "revoked"
    _verified(parties)


def test_a_store_failure_anywhere_is_503_with_a_retry_hint_never_500(parties, monkeypatch):
    def down(*_a: Any, **_k: Any) -> Any:
        raise OperationalError("SELECT 1", {}, OSError(errno.ECONNREFUSED, "connection refused"))

    monkeypatch.setattr(policies, "jobs_visible_to", down)
    r = parties.operator._http.request("GET", "/v1/jobs")
    _refused_unavailable(r)
    (entry,) = _entries(parties, "job.list")
    assert (entry["decision"], entry["code"], entry["details"]["status"]) == ("deny", "UNAVAILABLE", 503)
