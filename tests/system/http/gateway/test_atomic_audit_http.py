"""Every state change commits with its audit entry, or neither does (`gateway.journal`), on SQLite and PostgreSQL.

Each test drives a real gateway and fails one transaction on purpose, either *inside* it, where its audit entry is
written (the disk is full: ``OSError(ENOSPC)``), or *at its commit* (the store refuses the commit: an
``OperationalError``). Afterwards the change and its entry are both there or both absent — the ledger, the job,
the meters, the dataset, the agreement unchanged and no entry stating the change — and the caller got a stable
``503 UNAVAILABLE`` with ``Retry-After``, never a 500 (the console: a "try again" page with the same status and
header). The retry then succeeds with exactly one entry.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import re
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import httpx
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


# --- metered answers: a check, an encrypted check, a score, a PSI members call ------------------------------------
#
# The answer is computed first; its meters and the request's entry (with the answer's digest) commit in one
# transaction before it leaves. A failed transaction leaves no meter, no entry stating an answer, and no answer.

INCOME_AT_LEAST = {"name": "income_at_least", "dataset": "tax_income", "subject_column": "person_id",
                   "predicate": "monthly_income >= :threshold", "params": {"threshold": "number"}}


def _bank_agreement(parties: Any, kinds: list[str]) -> dict[str, Any]:
    return parties.agreement("icbc-wuxi", job_kinds=kinds, quotas={
        "calls_per_day": 10000, "verify_per_subject_per_day": 3, "distinct_params_per_subject": 3})


def _meters(parties: Any, ag_id: str) -> dict[str, int]:
    totals = parties.owner.usage(ag_id)["totals"]
    return {k: int(totals[k]) for k in ("calls", "jobs", "verifications", "scores")}


def _answers(client: Any) -> list[Any]:
    """Every response ``client`` receives from now on (status and headers of an SDK call's refusal)."""
    seen: list[Any] = []
    client._http.event_hooks["response"].append(seen.append)
    return seen


def _refused_with_nothing_metered(parties: Any, f: Fault, action: str, ag_id: str, before: dict[str, int],
                                  call: Callable[[], Any], seen: list[Any]) -> None:
    from veilbox.client import ApiError

    with pytest.raises(ApiError) as e:
        call()
    assert f.fired == 1
    assert (e.value.status, e.value.code) == (503, "UNAVAILABLE")
    assert seen[-1].status_code == 503 and seen[-1].headers.get("Retry-After", "").isdigit()
    assert _meters(parties, ag_id) == before  # no meter without its entry
    assert _allowed(parties, action) == []  # no entry stating an answer (nor a digest of one)
    assert [(e["code"], e["output_digest"]) for e in _entries(parties, action)] == [("UNAVAILABLE", None)]


def _one_answer_entry(parties: Any, action: str) -> dict[str, Any]:
    (entry,) = _allowed(parties, action)
    assert entry["output_digest"].startswith("sha256:") and entry["details"]["status"] == 200
    assert "outcome_of" not in entry["details"]  # written with the meters, not appended again
    _verified(parties)
    return entry


@pytest.mark.parametrize("mode", MODES)
def test_a_checks_meters_commit_with_its_entry_or_no_verdict_leaves(parties, fault, mode):
    parties.owner.define_verification(INCOME_AT_LEAST)
    ag = _bank_agreement(parties, ["verify"])
    before = _meters(parties, ag["id"])
    f = fault(mode, "verify.check")
    r = _post(parties.bank, "/v1/verifications/income_at_least/check",
              {"agreement_id": ag["id"], "subject": "P0000001", "params": {"threshold": 5000}, "consent_ref": "c"})
    assert f.fired == 1
    _refused_unavailable(r)
    assert "result" not in r.json() and "receipt" not in r.json()
    assert _meters(parties, ag["id"]) == before and _allowed(parties, "verify.check") == []
    assert [(e["code"], e["output_digest"]) for e in _entries(parties, "verify.check")] == [("UNAVAILABLE", None)]
    answer = parties.bank.check("income_at_least", ag["id"], "P0000001", {"threshold": 5000}, consent_ref="c")
    entry = _one_answer_entry(parties, "verify.check")
    assert entry["subject_hash"] == parties.service.ctx.keys.subject_hash("P0000001")
    import hashlib
    assert entry["output_digest"] == "sha256:" + hashlib.sha256(answer["receipt"].encode()).hexdigest()
    assert _meters(parties, ag["id"]) == {**before, "calls": before["calls"] + 1,
                                         "verifications": before["verifications"] + 1}


@pytest.mark.parametrize("mode", MODES)
def test_an_encrypted_checks_meters_commit_with_its_entry_or_no_ciphertext_leaves(parties, fault, mode):
    from veilbox import bank as bank_sdk

    parties.owner.define_verification(INCOME_AT_LEAST)
    ag = _bank_agreement(parties, ["verify"])
    keys = bank_sdk.verification_keys()
    subjects = ["P0000001", "P0000002", "P9999999"]
    before, seen = _meters(parties, ag["id"]), _answers(parties.bank)
    f = fault(mode, "verify.check_encrypted")
    _refused_with_nothing_metered(
        parties, f, "verify.check_encrypted", ag["id"], before,
        lambda: bank_sdk.check_thresholds(parties.bank, "income_at_least", ag["id"], subjects, [1, 1, 1],
                                          consent_ref="c", keys=keys), seen)
    got, _ = bank_sdk.check_thresholds(parties.bank, "income_at_least", ag["id"], subjects, [1, 1, 1],
                                       consent_ref="c", keys=keys)
    assert got[2] is False
    entry = _one_answer_entry(parties, "verify.check_encrypted")
    assert entry["details"]["subjects"] == 3
    assert _meters(parties, ag["id"]) == {**before, "calls": before["calls"] + 1,
                                         "verifications": before["verifications"] + 3}


def _write_model(parties: Any) -> Any:
    """A registered linear model, written as the model tests write theirs (tests/system/http/models/conftest.py)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).parents[1] / "models" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_score_models", path)
    assert spec is not None and spec.loader is not None
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
    return module.write_model(parties.service, "job_model_atomic")


@pytest.mark.parametrize("mode", MODES)
def test_a_scores_meters_and_model_quota_commit_with_its_entry_or_no_ciphertext_leaves(parties, fault, city_data,
                                                                                        mode):
    import pyarrow.parquet as pq

    from catalog import models
    from veilbox import bank as bank_sdk

    m = _write_model(parties)
    ag = parties.agreement("icbc-wuxi")
    keys = bank_sdk.scoring_keys("columns")
    x = bank_sdk.encode_applicants(m.card, pq.read_table(city_data.tax_income, columns=m.features)
                                   .slice(0, 4).to_pylist())
    engine = parties.service.ctx.engine

    def decide() -> Any:
        return bank_sdk.decide_applicants(parties.bank, m.id, x, [0.0] * 4, keys=keys, agreement_id=ag["id"])

    before, seen = _meters(parties, ag["id"]), _answers(parties.bank)
    f = fault(mode, "model.score")
    _refused_with_nothing_metered(parties, f, "model.score", ag["id"], before, decide, seen)
    assert models.score_usage(engine, ag["id"], m.id, "decision") == 0  # the card's quota untouched too
    out = decide()
    entry = _one_answer_entry(parties, "model.score")
    assert entry["details"]["scores_exposed"] == out.decisions_counted == out.decisions_used
    assert models.score_usage(engine, ag["id"], m.id, "decision") == out.decisions_counted
    assert _meters(parties, ag["id"]) == {**before, "calls": before["calls"] + 1, "scores": before["scores"] + 1}


@pytest.mark.parametrize("mode", MODES)
def test_a_psi_members_calls_meters_commit_with_its_entry_or_no_ids_leave(parties, fault, city_data, mode):
    import pyarrow.parquet as pq

    from veilbox import bank_psi

    ag = _bank_agreement(parties, ["psi_members"])
    known = [r["person_id"] for r in pq.read_table(city_data.tax_income, columns=["person_id"])
             .slice(0, 3).to_pylist()]
    ids = [*known, "P9999999"]
    before, seen = _meters(parties, ag["id"]), _answers(parties.bank)
    f = fault(mode, "psi.members")
    _refused_with_nothing_metered(
        parties, f, "psi.members", ag["id"], before,
        lambda: bank_psi.psi_members(parties.bank, ag["id"], "tax_income", ids, consent_refs="c"), seen)
    assert sorted(bank_psi.psi_members(parties.bank, ag["id"], "tax_income", ids, consent_refs="c")) == sorted(known)
    _one_answer_entry(parties, "psi.members")
    assert _meters(parties, ag["id"]) == {**before, "calls": before["calls"] + 1, "jobs": before["jobs"] + 1}


def test_an_entry_written_with_the_meters_states_the_padded_duration(parties, monkeypatch):
    """The entry commits before the padded answer leaves; it states the time to the bucket boundary the answer
    leaves on, never the unpadded time of the work (which would tell a present from an absent subject)."""
    monkeypatch.setitem(parties.service.settings.__dict__, "latency_bucket_ms", 400)
    parties.owner.define_verification(INCOME_AT_LEAST)
    ag = _bank_agreement(parties, ["verify"])
    for subject in ("P0000001", "P9999999"):
        parties.bank.check("income_at_least", ag["id"], subject, {"threshold": 1}, consent_ref="c")
    entries = _allowed(parties, "verify.check")
    assert len(entries) == 2 and all("outcome_of" not in e["details"] for e in entries)
    assert all(e["details"]["ms"] >= 400 for e in entries)


# --- the console's forms: the same journal as the API, the entry stating the form's redirect ----------------------
#
# A form's change and the console request's entry commit in one transaction; the middleware appends nothing more
# for it. A store that cannot commit leaves neither and answers a "try again" page: 503 UNAVAILABLE, Retry-After.

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _console(parties: Any, who: str) -> httpx.Client:
    """An HTTP client holding a console session of ``who`` (signed in as a browser would)."""
    web = httpx.Client(base_url=parties.service.url, follow_redirects=False, timeout=60)
    page = web.get("/console/login")
    token = getattr(parties, who)._http.headers["Authorization"].split()[1]
    r = web.post("/console/login", data={"token": token, "csrf": _csrf(page.text)})
    assert r.status_code == 303, r.text
    return web


def _csrf(html: str) -> str:
    m = CSRF.search(html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def _form(web: httpx.Client, path: str, page: str, data: dict[str, str] | None = None) -> Any:
    """Post a form the way the page does: with the CSRF token the page carries."""
    return web.post(path, data={"csrf": _csrf(web.get(page).text), **(data or {})})


def _try_again_page(r: Any) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers.get("Retry-After", "").isdigit()
    assert "try again" in r.text.lower() and "UNAVAILABLE" in r.text


def _one_form_entry(parties: Any, action: str) -> dict[str, Any]:
    (entry,) = _allowed(parties, action)
    assert entry["details"]["status"] == 303 and "outcome_of" not in entry["details"]
    assert [e["decision"] for e in _entries(parties, action)].count("allow") == 1
    return entry


@pytest.mark.parametrize("mode", MODES)
def test_console_approval_and_rejection_commit_with_their_entries_or_not_at_all(parties, fault, mode):
    ag, job = _pending_job(parties)
    spent = _spent(parties, ag["id"])
    web = _console(parties, "owner")
    page = f"/console/jobs/{job['id']}"
    try:
        f = fault(mode, "console.job.approve")
        r = _form(web, f"{page}/approve", page, {"spec_hash": job["spec_hash"]})
        assert f.fired == 1
        _try_again_page(r)
        assert parties.owner.job(job["id"])["state"] == "pending_approval" and _spent(parties, ag["id"]) == spent
        assert [(e["decision"], e["code"], e["details"]["status"])
                for e in _entries(parties, "console.job.approve")] == [("deny", "UNAVAILABLE", 503)]
        r = _form(web, f"{page}/approve", page, {"spec_hash": job["spec_hash"]})
        assert r.status_code == 303 and r.headers["location"] == page
        assert parties.owner.job(job["id"])["state"] == "approved"
        assert _spent(parties, ag["id"]) == spent + Fraction(1, 4)
        entry = _one_form_entry(parties, "console.job.approve")
        assert entry["details"]["job_id"] == job["id"] and entry["epsilon"] == "1/4" and entry["role"] == "owner"

        _, other = _pending_job(parties)
        page = f"/console/jobs/{other['id']}"
        f = fault(mode, "console.job.reject")
        _try_again_page(_form(web, f"{page}/reject", page, {"reason": "too fine-grained"}))
        assert f.fired == 1 and parties.owner.job(other["id"])["state"] == "pending_approval"
        assert _allowed(parties, "console.job.reject") == []
        assert _form(web, f"{page}/reject", page, {"reason": "too fine-grained"}).status_code == 303
        assert parties.owner.job(other["id"])["state"] == "rejected"
        entry = _one_form_entry(parties, "console.job.reject")
        assert entry["details"]["job_id"] == other["id"] and entry["details"]["reason"] == "too fine-grained"
    finally:
        web.close()
    _verified(parties)


@pytest.mark.parametrize("mode", MODES)
def test_console_agreement_forms_commit_with_their_entries_or_not_at_all(parties, fault, mode):
    doc = {"title": "t", "grantee": "risk-lab", "datasets": ["tax_income"],
           "columns": {"tax_income": ["district", "monthly_income"]}, "purposes": ["credit_risk"],
           "job_kinds": ["query"], "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2030-01-01T00:00:00Z",
           "budget": {"epsilon": 5, "delta": "1e-6"}, "min_group_units": 5, "quotas": {"calls_per_day": 100},
           "approval": "auto_within_budget", "exit": {"on_expiry": "seal_outputs"}}
    owner, operator = _console(parties, "owner"), _console(parties, "operator")
    try:
        f = fault(mode, "console.agreement.create")
        new = "/console/agreements/new"
        _try_again_page(_form(owner, "/console/agreements", new, {"document": json.dumps(doc)}))
        assert f.fired == 1 and parties.owner.agreements() == []
        assert _allowed(parties, "console.agreement.create") == []
        r = _form(owner, "/console/agreements", new, {"document": json.dumps(doc)})
        assert r.status_code == 303, r.text
        (ag,) = parties.owner.agreements()
        created = _one_form_entry(parties, "console.agreement.create")
        assert created["agreement_id"] == ag["id"] and created["details"]["document_hash"] == ag["document_hash"]
        page = f"/console/agreements/{ag['id']}"
        for action, web, state_before in (("accept", operator, "proposed"), ("suspend", owner, "active"),
                                          ("revoke", owner, "suspended")):
            f = fault(mode, f"console.agreement.{action}")
            confirmed = {"confirmed": "yes", "reason": "audit finding"}  # suspend and revoke need both
            _try_again_page(_form(web, f"{page}/{action}", page, confirmed))
            assert f.fired == 1 and parties.owner.agreement(ag["id"])["state"] == state_before
            assert _allowed(parties, f"console.agreement.{action}") == []
            r = _form(web, f"{page}/{action}", page, confirmed)
            assert r.status_code == 303 and r.headers["location"] == page
            entry = _one_form_entry(parties, f"console.agreement.{action}")
            assert entry["agreement_id"] == ag["id"]
        assert parties.owner.agreement(ag["id"])["state"] == "revoked"
        assert _allowed(parties, "console.agreement.accept")[0]["details"]["document_hash"] == ag["document_hash"]
    finally:
        owner.close()
        operator.close()
    _verified(parties)


# --- a trained model's registration: in its release's transaction --------------------------------------------------

TRAIN = {"dataset": "tax_income", "features": ["district", "age", "monthly_income", "tax_paid"],
         "label": "has_default", "model": "logistic_regression", "epochs": 1, "batch_size": 256, "epsilon": 1.0,
         "delta": 1e-6, "max_grad_norm": 1.0}


@pytest.mark.parametrize("mode", MODES)
def test_a_trained_models_registration_commits_with_its_release_and_entry_or_not_at_all(parties, fault, mode):
    from catalog import models

    ctx = parties.service.ctx
    ag = parties.agreement(budget={"epsilon": 5, "delta": "1e-5"})  # two runs
    job = parties.operator.submit_job(ag["id"], "train", TRAIN)
    assert job["state"] == "approved"
    claimed = jobflow.claim_next(ctx, "worker-a")
    assert claimed is not None and claimed.id == job["id"]
    f = fault(mode, "job.release")
    with pytest.raises((OSError, OperationalError)):
        jobflow.run_claimed(ctx, claimed)
    assert f.fired == 1 and parties.operator.job(job["id"])["state"] == "succeeded"
    assert [m for m in models.list_models(ctx.engine) if m.job_id == job["id"]] == []  # no model without release
    assert _entries(parties, "job.release") == []
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)  # the lease runs out: the sweep fails it, charged
    (swept,) = leases.sweep(ctx, now=later)
    assert swept.after.state is policies.JobState.FAILED
    assert [m for m in models.list_models(ctx.engine) if m.job_id == job["id"]] == []

    again = parties.operator.submit_job(ag["id"], "train", TRAIN)
    claimed = jobflow.claim_next(ctx, "worker-a")
    assert claimed is not None and claimed.id == again["id"]
    assert jobflow.run_claimed(ctx, claimed).state is policies.JobState.RELEASED
    result = parties.operator.job_result(again["id"])["result"]
    (model,) = [m for m in models.list_models(ctx.engine) if m.job_id == again["id"]]
    assert (model.id, model.certificate_id) == (result["model_id"], result["certificate_id"])
    (release,) = _entries(parties, "job.release")
    assert release["details"]["job_id"] == again["id"] and release["details"]["model_id"] == model.id
    _verified(parties)
