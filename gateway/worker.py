"""The embedded background worker: claims approved jobs from the durable queue and runs them one at a time.

Every job it claims is leased to it (`policies.claim_next`) and renewed by a heartbeat while it runs
(`gateway.services.leases`). At start and every half lease (``VEILBOX_JOB_LEASE_S``) it sweeps the store: a job
whose lease expired — its process died or hung — is failed and refunded, or finished per its state, each
takeover audited (`gateway.services.leases.sweep`); a job another live process holds is never touched, so
several processes share one store and a restart fails none of the others' jobs. Between sweeps it polls the
queue; approvals wake it at once. Scale-out runs the same loop in separate worker processes (one id each).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time

import policies
from gateway.context import AppContext
from gateway.services import jobs as jobflow
from gateway.services import leases

log = logging.getLogger("veilbox.worker")

__all__ = ["JobWorker"]


class JobWorker:
    def __init__(self, ctx: AppContext, poll_s: float = 1.0) -> None:
        self.ctx, self.poll_s = ctx, poll_s
        self.id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="veilbox-worker", daemon=True)
        self._swept_at = 0.0

    def start(self) -> None:
        self.start_recovery()
        self._thread.start()

    def start_recovery(self) -> None:
        """Sweep the store once: take over every job whose lease expired (one audit entry each)."""
        self.sweep()

    def sweep(self) -> None:
        self._swept_at = time.monotonic()
        leases.sweep(self.ctx)

    @property
    def alive(self) -> bool:
        """Whether the worker's loop thread is running (what `/ready` reports as ``worker``)."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        jobflow.runtime(self.ctx).wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def run_once(self) -> bool:
        """Claim and run one job; False when the queue is empty."""
        job = policies.claim_next(self.ctx.engine, self.id, lease_s=self.ctx.settings.job_lease_s)
        if job is None:
            return False
        jobflow.run_claimed(self.ctx, job)
        return True

    def _loop(self) -> None:
        wake = jobflow.runtime(self.ctx).wake
        sweep_every = self.ctx.settings.job_lease_s / 2
        while not self._stop.is_set():
            try:
                if time.monotonic() - self._swept_at >= sweep_every:
                    self.sweep()
                busy = self.run_once()
            except Exception:  # the loop must survive a broken job or a store hiccup
                log.exception("worker iteration failed")
                busy = False
            if not busy:
                wake.wait(min(self.poll_s, sweep_every))
                wake.clear()
