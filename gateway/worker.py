"""Job workers: claim approved jobs from the durable queue and run them one at a time.

`JobWorker` is one worker: a thread that claims the oldest approved job (`gateway.services.jobs.claim_next`, its
``job.start`` entry committing with the claim, over `policies.claim_next`: ``BEGIN IMMEDIATE`` on SQLite,
``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so no job is handed to two workers in any process), runs it
leased to the worker's id and renews the lease by a heartbeat while it runs (`gateway.services.leases`). At start
and every half lease (``VEILBOX_JOB_LEASE_S``) it sweeps the store: a job whose lease expired — its process died
or hung — is failed and refunded, or finished per its state, each takeover audited (`gateway.services.leases.sweep`);
a job another live process holds is never touched, so several processes share one store and a restart fails none
of the others' jobs. Between jobs it polls the queue every ``VEILBOX_JOB_POLL_S``: an approval made in any process
is seen within one poll; one made in this process wakes it at once (an in-process event, never relied on across
processes).

It runs in two places: embedded in each `veilbox serve` process (started and stopped with the app's lifespan,
``VEILBOX_WORKER``), and as separate processes without HTTP (`run_workers`, ``veilbox worker --count K``): a
supervisor starts K children, each with its own `JobWorker` (own id: host, pid, random part), forwards
SIGTERM/SIGINT to them and starts a child again when one dies. Stopping (`JobWorker.stop`) lets the current job
finish for ``VEILBOX_WORKER_STOP_GRACE_S`` and then gives it up: the worker ends its own lease and sweeps, so the
job is failed and refunded at once (``job.recover``) instead of waiting for the lease to expire. A second
SIGTERM/SIGINT gives it up without waiting.

Each sweep also disposes of withdrawn datasets whose grace period (``VEILBOX_WITHDRAW_GRACE_S``) ended: their
data key destroyed, their sealed copy deleted, a signed ``dataset.dispose`` entry (`gateway.services.datasets`);
and of ended agreements: the expiry recorded, the exit clause carried out, a signed disposal record
(`gateway.services.disposal`).

With ``VEILBOX_ANCHOR_SINK`` set, the loop also anchors the signed audit head every ``VEILBOX_ANCHOR_EVERY_S``
when it advanced (`gateway.anchoring`, on a thread of its own so a slow evidence service never delays a job).

Every ``VEILBOX_ALERT_EVERY_S`` the loop also evaluates the alert rules (监测预警) and delivers due alert webhooks
(`gateway.services.alerts.AlertDuty`, on a thread of its own too); each condition fires once across processes.
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

import policies
from gateway import anchoring
from gateway.context import AppContext, open_context
from gateway.services import alerts, datasets, disposal, leases
from gateway.services import jobs as jobflow
from gateway.settings import Settings

log = logging.getLogger("veilbox.worker")

__all__ = ["JobWorker", "run_workers"]


class JobWorker:
    def __init__(self, ctx: AppContext, poll_s: float | None = None) -> None:
        self.ctx = ctx
        self.poll_s = float(poll_s if poll_s is not None else ctx.settings.job_poll_s)
        self.id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="veilbox-worker", daemon=True)
        self._swept_at = 0.0
        self._current: str | None = None  # the job this worker runs now
        self.anchorer = anchoring.scheduled(ctx.audit, ctx.settings)  # 存证 duty, None without a sink
        self.alerts = alerts.AlertDuty(ctx)  # 监测预警 duty: rules and webhooks

    def start(self) -> None:
        self.start_recovery()
        self._thread.start()

    def start_recovery(self) -> None:
        """Sweep the store once: take over every job whose lease expired (one audit entry each)."""
        self.sweep()

    def sweep(self) -> None:
        self._swept_at = time.monotonic()
        leases.sweep(self.ctx)
        self.dispose_due()

    def dispose_due(self) -> None:
        """Withdrawn datasets past their grace period: data key destroyed, sealed copy deleted, signed disposal
        record (`gateway.services.datasets.dispose_due`); a failure is retried at the next sweep."""
        try:
            datasets.dispose_due(self.ctx)
        except Exception:  # the loop must survive; the next sweep tries again
            log.exception("disposal of withdrawn datasets failed")
        try:  # ended agreements: their exit clause carried out, a signed record (gateway.services.disposal)
            disposal.dispose_due(self.ctx)
        except Exception:  # the loop must survive; the next sweep finishes what is left
            log.exception("disposal of ended agreements failed")

    @property
    def alive(self) -> bool:
        """Whether the worker's loop thread is running (what `/ready` reports as ``worker``)."""
        return self._thread.is_alive()

    @property
    def current(self) -> str | None:
        """The id of the job this worker runs now, if any."""
        return self._current

    def request_stop(self) -> None:
        """Claim nothing more; the current job, if any, runs on."""
        self._stop.set()
        jobflow.runtime(self.ctx).wake.set()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the loop to end; True when it has."""
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self, timeout: float | None = None) -> None:
        """Claim nothing more; let the current job finish for ``timeout`` seconds (default
        ``VEILBOX_WORKER_STOP_GRACE_S``), then give it up (`give_up`)."""
        self.request_stop()
        if not self.join(self.ctx.settings.worker_stop_grace_s if timeout is None else timeout):
            self.give_up()

    def give_up(self) -> bool:
        """End this worker's lease on its current job and sweep: the job is failed and refunded now
        (``job.recover``, ``worker.interrupted``) rather than when its lease would expire. True if it was taken
        over. Its still-running execution can no longer move it: every state change re-checks the state."""
        job_id = self._current
        if job_id is None:
            return False
        for _ in range(3):  # the job's heartbeat may renew between our expiry and the sweep: try again
            past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
            if not policies.renew_lease(self.ctx.engine, job_id, self.id, lease_s=0.001, now=past):
                return False  # finished meanwhile, or no longer ours
            if any(s.before.id == job_id for s in leases.sweep(self.ctx)):
                log.warning("worker %s gave up job %s at shutdown (failed and refunded)", self.id, job_id)
                return True
        return False

    def run_once(self) -> bool:
        """Claim and run one job; False when the queue is empty."""
        job = jobflow.claim_next(self.ctx, self.id)  # its job.start entry commits with the claim
        if job is None:
            return False
        self._current = job.id
        log.info("worker %s runs job %s (%s)", self.id, job.id, job.kind.value)
        try:
            done = jobflow.run_claimed(self.ctx, job)
        finally:
            self._current = None
        log.info("worker %s finished job %s: %s", self.id, job.id, done.state.value)
        return True

    def _loop(self) -> None:
        wake = jobflow.runtime(self.ctx).wake
        sweep_every = self.ctx.settings.job_lease_s / 2
        while not self._stop.is_set():
            try:
                if time.monotonic() - self._swept_at >= sweep_every:
                    self.sweep()
                if self.anchorer is not None:
                    self.anchorer.tick_in_background()
                self.alerts.tick_in_background()
                busy = self.run_once()
            except Exception:  # the loop must survive a broken job or a store hiccup
                log.exception("worker iteration failed")
                busy = False
            if not busy and not self._stop.is_set():
                wake.wait(min(self.poll_s, sweep_every))
                wake.clear()


# --- separate worker processes (`veilbox worker`) -----------------------------------------------------------------

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"
_RESTART_DELAY_S = 1.0


def _log_to_stderr() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=_LOG_FORMAT, force=True)


def _signals(handler: Callable[[int, FrameType | None], None]) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


def _worker_main(settings: Settings) -> None:
    """One worker process: its own context and `JobWorker`, no HTTP. The first SIGTERM/SIGINT stops it after
    the current job (at most ``worker_stop_grace_s``), a second one gives the job up at once. It leaves the
    terminal's process group (a Ctrl-C reaches it once, through the supervisor) and stops as on SIGTERM when the
    supervisor is gone."""
    os.setpgrp()
    _log_to_stderr()
    parent = os.getppid()
    requests: list[int] = []
    asked = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        requests.append(signum)
        asked.set()

    _signals(on_signal)
    ctx = open_context(settings)
    worker = JobWorker(ctx)
    try:
        worker.start()
        log.info("job worker %s started", worker.id)
        while not asked.wait(1.0):
            if not worker.alive:
                log.error("job worker %s stopped unexpectedly", worker.id)
                sys.exit(1)
            if os.getppid() != parent:
                log.warning("job worker %s: the supervisor is gone, stopping", worker.id)
                requests.append(signal.SIGTERM)
                break
        log.info("job worker %s stopping (%s)", worker.id, signal.Signals(requests[0]).name)
        worker.request_stop()
        deadline = time.monotonic() + settings.worker_stop_grace_s
        while len(requests) < 2 and time.monotonic() < deadline and not worker.join(0.2):
            pass
        if worker.alive:
            worker.give_up()
        log.info("job worker %s stopped", worker.id)
    finally:
        ctx.close()


def run_workers(settings: Settings, count: int | None = None) -> int:
    """``veilbox worker``: run ``count`` (default ``settings.job_workers``) job worker processes over the store of
    ``settings`` until SIGTERM/SIGINT, which is passed on to each; a child that dies is started again. Returns the
    exit status."""
    _log_to_stderr()
    count = count or settings.job_workers
    open_context(settings).close()  # migrate and sweep the home once, before the children open it together
    mp = multiprocessing.get_context("spawn")
    children: list[multiprocessing.process.BaseProcess] = []
    stopping = threading.Event()

    def spawn() -> multiprocessing.process.BaseProcess:
        p = mp.Process(target=_worker_main, args=(settings,), name="veilbox-job-worker", daemon=False)
        p.start()
        return p

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.set()
        for p in children:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signum)

    _signals(on_signal)
    children.extend(spawn() for _ in range(count))
    log.info("started %d job worker process(es): %s", count, ", ".join(str(p.pid) for p in children))
    while not stopping.wait(_RESTART_DELAY_S):
        for i, p in enumerate(children):
            if not p.is_alive() and not stopping.is_set():
                log.warning("job worker process %s exited with %s; starting another", p.pid, p.exitcode)
                children[i] = spawn()
    deadline = time.monotonic() + settings.worker_stop_grace_s + 30
    for p in children:
        p.join(max(0.0, deadline - time.monotonic()))
    status = 0
    for p in children:
        if p.is_alive():
            log.error("job worker process %s did not stop in time; killing it", p.pid)
            p.kill()
            p.join(5)
            status = 1
    log.info("job workers stopped")
    return status
