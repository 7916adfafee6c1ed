"""Job leases in the service: the per-process lease owner, the heartbeat of a running job, the audited sweep.

The process that runs a job holds a lease on it (`policies.jobs`, "Leases"): the background worker from its claim
(owner: the worker's id), a ``POST /queries`` request from the inline job's submission (owner: `process_id`, a
random id per process). While the job runs, a `Heartbeat` thread renews the lease every third of
``VEILBOX_JOB_LEASE_S``; the outcome (failure, release, or an output left for the owner's release) clears it.

`sweep` runs in every worker process, at start and every half lease (`gateway.worker`): it takes over the jobs
whose lease expired — a process killed, hung past its lease, or from before leases — and audits each takeover
like the worker's own transitions, its entries in the takeover's transaction (`gateway.journal`): a stranded
``approved``/``running`` job is failed and refunded (``job.recover``, reason ``worker.interrupted``); one stuck
in ``succeeded`` whose output was to be released at once (the output died with its process; data was read) fails
charged (``job.fail`` with ``<kind>.failed``, and
``job.incident`` with cause ``worker.interrupted`` for the owner), exactly as any failure after a read. A job
whose lease is fresh — whichever live process holds it — is never touched, so starting another process on the
same store fails nobody's running job.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from types import TracebackType

from sqlalchemy import Connection

import policies
from gateway.audit import AuditEvent
from gateway.context import AppContext
from policies import Swept
from policies.jobs import INTERRUPTED
from vocab.actions import AuditAction
from vocab.roles import SYSTEM

log = logging.getLogger("veilbox.leases")

__all__ = ["WORKER", "Heartbeat", "process_id", "sweep"]

WORKER = "worker"  # audit actor of the background worker and of the sweeper
Clock = Callable[[], dt.datetime]
_ids: list[tuple[int, str]] = []  # (pid, id): a forked child draws its own


def process_id() -> str:
    """This process's lease owner id: host, pid and a random part (a restarted process never reuses one)."""
    pid = os.getpid()
    if not _ids or _ids[0][0] != pid:
        _ids[:] = [(pid, f"{socket.gethostname()}-{pid}-{secrets.token_hex(4)}")]
    return _ids[0][1]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Heartbeat:
    """``with Heartbeat(ctx, job_id, owner):`` renews ``owner``'s lease on the job every ``lease_s / 3`` seconds
    until the block ends. ``lost`` turns true when the lease is no longer the owner's (a sweeper took the job
    over after it expired): the job's next state change then fails and its output is discarded, never released.
    A store error is logged and retried at the next beat."""

    def __init__(self, ctx: AppContext, job_id: str, owner: str, *, lease_s: float | None = None,
                 clock: Clock = _utcnow) -> None:
        self.engine, self.job_id, self.owner, self.clock = ctx.engine, job_id, owner, clock
        self.lease_s = float(lease_s if lease_s is not None else ctx.settings.job_lease_s)
        self.lost = False
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"veilbox-lease-{job_id}", daemon=True)

    def beat(self) -> bool:
        """Renew once; False when the lease is lost."""
        held = policies.renew_lease(self.engine, self.job_id, self.owner, lease_s=self.lease_s, now=self.clock())
        self.beats += 1
        if not held:
            self.lost = True
        return held

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                if not self.beat():
                    return
            except Exception:  # a store hiccup: the lease holds until its expiry, try again at the next beat
                log.exception("renewing the lease of job %s failed", self.job_id)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()


def _entry(job: policies.Job, action: str, **details: object) -> AuditEvent:
    return AuditEvent(
        actor=WORKER, role=SYSTEM, action=action, agreement_id=job.agreement_id,
        dataset=",".join(job.datasets) or None, decision="error", code="JOB_FAILED",
        epsilon=str(job.cost.epsilon), delta=str(job.cost.delta),
        details={"job_id": job.id, "kind": job.kind.value, **details})


def sweep(ctx: AppContext, *, now: dt.datetime | None = None) -> list[Swept]:
    """Take over every job whose lease expired (`policies.sweep_expired`), each takeover's entries committing with
    it (`gateway.journal`; module doc)."""

    def journal(conn: Connection, s: Swept) -> None:
        job = s.before
        if s.refunded:
            ctx.audit.append_in(conn, _entry(job, AuditAction.JOB_RECOVER, reason=INTERRUPTED, refunded=True,
                                             state=job.state.value))
        else:
            ctx.audit.append_in(conn, _entry(job, AuditAction.JOB_FAIL, reason=s.after.failure_reason,
                                             refunded=False))
            ctx.audit.append_in(conn, _entry(job, AuditAction.JOB_INCIDENT, cause=INTERRUPTED, charged=True,
                                             released=False))

    return policies.sweep_expired(ctx.engine, now=now, journal=journal)
