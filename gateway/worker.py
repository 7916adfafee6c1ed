"""The embedded background worker: claims approved jobs from the durable queue and runs them one at a time.

At start it fails and refunds every job left ``running`` by a previous process (`policies.recover_interrupted`:
no job is lost, none runs twice), then polls the queue; approvals wake it at once. Scale-out runs the same loop
in separate worker processes (one id each) against PostgreSQL.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading

import policies
from gateway.audit import AuditEvent
from gateway.context import AppContext
from gateway.services import jobs as jobflow
from vocab.actions import AuditAction
from vocab.roles import SYSTEM

log = logging.getLogger("veilbox.worker")

__all__ = ["JobWorker"]


class JobWorker:
    def __init__(self, ctx: AppContext, poll_s: float = 1.0) -> None:
        self.ctx, self.poll_s = ctx, poll_s
        self.id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="veilbox-worker", daemon=True)

    def start(self) -> None:
        self.start_recovery()
        self._thread.start()

    def start_recovery(self) -> None:
        """Fail and refund every job a previous process left ``running`` (one audit entry each)."""
        for job_id in policies.recover_interrupted(self.ctx.engine):
            self.ctx.audit.append(AuditEvent(actor=jobflow.WORKER, role=SYSTEM, action=AuditAction.JOB_RECOVER,
                                             decision="error", code="JOB_FAILED",
                                             details={"job_id": job_id, "reason": "worker.interrupted",
                                                      "refunded": True}))

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        jobflow.runtime(self.ctx).wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def run_once(self) -> bool:
        """Claim and run one job; False when the queue is empty."""
        job = policies.claim_next(self.ctx.engine, self.id)
        if job is None:
            return False
        jobflow.run_claimed(self.ctx, job)
        return True

    def _loop(self) -> None:
        wake = jobflow.runtime(self.ctx).wake
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except Exception:  # the loop must survive a broken job or a store hiccup
                log.exception("worker iteration failed")
                busy = False
            if not busy:
                wake.wait(self.poll_s)
                wake.clear()
