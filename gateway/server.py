"""Running the service: `run` (foreground, `veilbox serve`) and `BackgroundServer` (a real uvicorn on a free
loopback port in a thread, used by the demo and the end-to-end tests)."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from fastapi import FastAPI

from gateway.app import create_app
from gateway.context import AppContext, open_context
from gateway.settings import Settings


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def run(settings: Settings) -> None:
    ctx = open_context(settings)
    try:
        uvicorn.run(create_app(ctx), host=settings.host, port=settings.port, log_level="info",
                    server_header=False)
    finally:
        ctx.close()


class BackgroundServer:
    def __init__(self, ctx: AppContext, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.ctx = ctx
        self.app: FastAPI = create_app(ctx)
        self.host, self.port = host, port or free_port(host)
        self._server = uvicorn.Server(uvicorn.Config(self.app, host=self.host, port=self.port,
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
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
