"""Private PostgreSQL and Redis servers a test may restart or stop (never the shared ones).

`initdb` refuses to run as root, so when the tests run as root the cluster is created and
driven as the `postgres` OS user, in a temp folder that user owns. Missing binaries are a
failure under CI (`require_service`), a skip elsewhere.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tests.conftest import require_service

__all__ = ["PrivatePostgres", "PrivateRedis", "private_postgres", "private_redis"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    return found[-1] or None


class PrivatePostgres:
    """A throwaway cluster on its own port: `url`, `restart()`, `stop()`."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.data = root / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            [*self._as_postgres, *args],
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def _ctl(self, *args: str) -> None:
        pg_ctl = _pg_bin("pg_ctl")
        assert pg_ctl is not None
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.root / "server.log")
        self._run(pg_ctl, "-D", str(self.data), "-l", log, "-o", options, "-w", *args)

    def init(self) -> None:
        initdb = _pg_bin("initdb")
        assert initdb is not None
        self._run(initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self._ctl("start")

    def restart(self) -> None:
        """An immediate (crash) restart: every connection is cut, nothing shut down cleanly."""
        self._ctl("restart", "-m", "immediate")

    def start(self) -> None:
        self._ctl("start")

    def stop(self) -> None:
        self._ctl("stop", "-m", "immediate")


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A private, running PostgreSQL cluster; removed afterwards."""
    if _pg_bin("initdb") is None or _pg_bin("pg_ctl") is None:
        require_service("PostgreSQL binaries (initdb, pg_ctl)", FileNotFoundError("initdb"))
    root = Path(tempfile.mkdtemp(prefix="keel-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    server = PrivatePostgres(root, free_port())
    try:
        try:
            server.init()
        except (subprocess.CalledProcessError, FileNotFoundError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            require_service("a private PostgreSQL", RuntimeError(f"{exc}: {detail!r}"))
        yield server
    finally:
        with suppress(Exception):
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


class PrivateRedis:
    """A `redis-server` on its own port, without persistence: `url`, `stop()`, `start()`."""

    def __init__(self, port: int, logs: Path) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.logs = logs
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        log = open(self.logs / f"redis-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the private redis-server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextmanager
def private_redis(logs: Path) -> Iterator[PrivateRedis]:
    """A private, running Redis; stopped afterwards."""
    if shutil.which("redis-server") is None:
        require_service("redis-server", FileNotFoundError("redis-server"))
    server = PrivateRedis(free_port(), logs)
    server.start()
    try:
        yield server
    finally:
        server.stop()
