"""Running the service: `run` (foreground, `veilbox serve`: one or several uvicorn worker processes, each built by
`factory`) and `BackgroundServer` (a real uvicorn on a free loopback port in a thread, used by the demo and the
end-to-end tests).

`veilbox serve --workers N` runs N HTTP processes over one store (uvicorn's process manager: they share the
listening socket, a child that dies is started again, SIGTERM/SIGINT stops them all after the requests in flight,
at most ``VEILBOX_HTTP_STOP_GRACE_S``). Each child calls `factory`, which builds its `Settings` from the
environment (`run` exports the ones the command line set as ``VEILBOX_*``), opens its own context and closes it
when the app shuts down. Before any child starts, `run` opens the home once: migrations and the start-up sweeps
run in one process, never N at a time. Whether each process also runs a job worker is ``VEILBOX_WORKER``
(`gateway.worker`; leases keep several workers on one store apart).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI

from gateway.app import create_app
from gateway.context import AppContext, open_context
from gateway.settings import Settings

FACTORY = "gateway.server:factory"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def factory() -> FastAPI:
    """The app of one `veilbox serve` process (``uvicorn.run(FACTORY, factory=True)``): `Settings` from the
    ``VEILBOX_*`` environment, a context of its own, closed when the app shuts down (after its job worker)."""
    ctx = open_context(Settings())
    app = create_app(ctx)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[None]:
        try:
            async with inner(a):
                yield
        finally:
            ctx.close()

    app.router.lifespan_context = lifespan
    return app


def _env_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return json.dumps([str(v) for v in value])
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def export_env(settings: Settings) -> None:
    """Write the settings given explicitly (the command line's) into ``VEILBOX_*`` for the worker processes;
    the others already come from the environment or are defaults."""
    for name in sorted(settings.model_fields_set):
        os.environ[f"VEILBOX_{name.upper()}"] = _env_value(getattr(settings, name))


def run(settings: Settings) -> None:
    """``veilbox serve``: ``settings.http_workers`` HTTP processes on ``settings.host:port`` over one store."""
    open_context(settings).close()  # migrate and sweep the home once, before the processes open it together
    export_env(settings)
    uvicorn.run(FACTORY, factory=True, host=settings.host, port=settings.port, workers=settings.http_workers,
                log_level="info", access_log=settings.access_log, server_header=False,
                timeout_graceful_shutdown=int(settings.http_stop_grace_s))


class _PromptServer(uvicorn.Server):
    """uvicorn that stops as soon as it is asked (`request_exit`) rather than at its next 0.1 s tick, and closes
    without uvicorn's fixed 0.1 s pause once its connections are gone. The same shutdown otherwise: it stops
    accepting, asks every connection to finish, waits (without a bound, as uvicorn does by default) for the
    requests and tasks in flight, then runs the app's lifespan shutdown."""

    _POLL_S = 0.005
    _loop: asyncio.AbstractEventLoop | None = None
    _wake: asyncio.Event | None = None

    def request_exit(self) -> None:
        """Ask the server to stop; safe from any thread."""
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already finished
                loop.call_soon_threadsafe(wake.set)

    async def main_loop(self) -> None:
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()  # after `_wake`: `request_exit` reads them in the other order
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)
            should_exit = await self.on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        while (self.server_state.connections or self.server_state.tasks) and not self.force_exit:
            await asyncio.sleep(self._POLL_S)
        for server in self.servers:
            await server.wait_closed()
        if not self.force_exit:
            await self.lifespan.shutdown()


class BackgroundServer:
    def __init__(self, ctx: AppContext, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.ctx = ctx
        self.app: FastAPI = create_app(ctx)
        self.host, self.port = host, port or free_port(host)
        self._server = _PromptServer(uvicorn.Config(self.app, host=self.host, port=self.port,
                                                    log_level="warning", server_header=False))
        self._thread = threading.Thread(target=self._server.run, name="veilbox-http", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.002)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.request_exit()
        self._thread.join(timeout=10)
