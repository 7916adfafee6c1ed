"""A throwaway PostgreSQL server for the suite: a fresh cluster in a temporary directory on a free loopback port.

`make test` installs Debian's ``postgresql`` package when no ``initdb`` is found (``make postgres``); each pytest
process (one per xdist worker) then starts its own cluster once (`PgServer`, session-scoped fixture ``pg_server``
in tests/conftest.py) and every test that runs on PostgreSQL gets a database of its own (``pg_url``), created
from ``template0`` or from a session template and dropped afterwards. The cluster is tuned for a test run
(``fsync=off``: it is thrown away), never for a deployment.

PostgreSQL refuses to run as root: as root the server runs as the ``postgres`` system user the Debian package
creates, in a directory that user owns. Without a server binary the PostgreSQL half of each store-facing test is
skipped, except under ``CI=true``, where it fails: CI must test both stores.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

__all__ = ["PgServer", "PgUnavailable", "find_bin"]


class PgUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine, or the cluster did not start."""


def find_bin(name: str) -> str | None:
    """``name`` (``initdb``, ``pg_ctl``) from PATH or the newest ``/usr/lib/postgresql/<v>/bin``."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One cluster: `start`, `create_database`, `drop_database`, `restart`, `stop`."""

    def __init__(self) -> None:
        initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
        if not initdb or not pg_ctl:
            raise PgUnavailable("PostgreSQL server binaries not found (make postgres installs them)")
        self.initdb, self.pg_ctl = initdb, pg_ctl
        self.as_root = os.geteuid() == 0
        if self.as_root:
            try:
                import pwd

                self._pw = pwd.getpwnam("postgres")
            except KeyError as e:
                raise PgUnavailable("running as root and no `postgres` user to run the server as") from e
        self.dir = Path(tempfile.mkdtemp(prefix="veilbox-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.user = "veilbox"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    def start(self) -> PgServer:
        if self.as_root:
            os.chown(self.dir, self._pw.pw_uid, self._pw.pw_gid)
        try:
            self._run(self.initdb, "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8",
                      "--no-sync", "--locale=C")
            self._pg_ctl_start()
        except subprocess.CalledProcessError as e:
            raise PgUnavailable(f"the test cluster did not start: {e.stderr or e.stdout}") from e
        return self

    def _pg_ctl_start(self) -> None:
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
        self._run(self.pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"), "-w", "-t", "60",
                  "start")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres", autocommit=True) as c:
            c.execute(sql)

    def create_database(self, template: str = "template0") -> str:
        """A new empty database (or a copy of ``template``); returns its SQLAlchemy URL."""
        name = f"t_{secrets.token_hex(6)}"
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _durable(self) -> None:
        """Make every commit so far durable before a crash-like stop. The test cluster runs with
        ``synchronous_commit=off`` (speed): a commit's WAL may still sit in shared memory, which an immediate stop
        throws away, whereas a production server (``synchronous_commit=on``) has it on disk when it answers."""
        try:
            self._admin("CHECKPOINT")
        except Exception:  # a server already down has nothing more to flush
            pass

    def restart(self, *, down_s: float = 0.0) -> None:
        """Stop the server (``immediate``: connections are cut as in a crash) and start it again on the same port."""
        import time

        self._durable()
        self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")
        if down_s:
            time.sleep(down_s)
        self._pg_ctl_start()

    def stop_only(self) -> None:
        self._durable()
        self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)

    def start_again(self) -> None:
        self._pg_ctl_start()

    def stop(self) -> None:
        self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
