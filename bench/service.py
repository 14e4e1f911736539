"""Throughput and latency of the distributed service: `keel serve` + N `keel worker`s.

```bash
.venv/bin/python bench/service.py                          # 1, 2 and 4 workers, 300 runs each
.venv/bin/python bench/service.py --workers 2 --runs 200 --kill
.venv/bin/python bench/service.py --workers 2 --env KEEL_SERVICE__GC_GEN0_THRESHOLD=0
```
The API and every worker are real processes on Postgres (127.0.0.1:5432, a throwaway
database) and Redis (127.0.0.1:6379, a throwaway key prefix), queue `procrastinate`. The
model is `scripted:sales@200ms`: the sales question's three model calls (SQL, calculator,
answer) each wait 200 ms, so a run is eight graph steps and ≥ 0.6 s of model time.
Runs are submitted through the official `langgraph-sdk` client as `runs.wait` on fresh
threads, `--clients` at a time.

The processes reach Postgres directly (no PgBouncer), so the checkpoint pool uses
server-side prepared statements (`KEEL_CHECKPOINT_POOL__PREPARE_THRESHOLD=1`).

Reported per setting: runs/s over the measured window, P50/P99 end-to-end latency (the
client's `wait`), P50/P99 queue wait (procrastinate's `deferred` → `started`), CPU
milliseconds per run (from /proc) of the API, of the workers together, of the Postgres
backends serving the benchmark's database (those connected when the window opens), of the
local redis-server and of this client process, and their total; the peak resident memory
of the API and of the largest worker; and, with `--kill`, the runs lost after one worker is
SIGKILLed a third of the way through (target 0).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from langgraph_sdk import get_client

PG_ADMIN = os.environ.get("KEEL_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("KEEL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
QUESTION = "Which 3 products had the highest revenue last month, and what was their total revenue?"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    workers: int
    runs: int
    ok: int
    lost: int
    seconds: float
    latencies: list[float]
    queue_waits: list[float]
    cpu_s: dict[str, float]
    """CPU seconds over the window: `api`, `workers`, `postgres`, `redis`, `client`."""
    rss_mb: dict[str, float]
    """Peak resident memory: `api`, `worker` (the largest)."""

    def row(self) -> str:
        lat, qw = sorted(self.latencies), sorted(self.queue_waits)
        ms = {k: 1000 * v / max(1, self.ok) for k, v in self.cpu_s.items()}
        parts = " / ".join(f"{ms[k]:.1f}" for k in CPU_PARTS)
        return (
            f"| {self.workers} | {self.runs} | {self.ok / self.seconds:.1f} | "
            f"{_pct(lat, 50):.2f} / {_pct(lat, 99):.2f} | "
            f"{_pct(qw, 50):.2f} / {_pct(qw, 99):.2f} | "
            f"{parts} | {sum(ms.values()):.0f} | "
            f"{self.rss_mb['api']:.0f} / {self.rss_mb['worker']:.0f} | {self.lost} |"
        )


CPU_PARTS = ("api", "workers", "postgres", "redis", "client")


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    k = min(len(values) - 1, round(p / 100 * (len(values) - 1)))
    return values[k]


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICKS


def _peak_rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    kb = next((line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")), "0")
    return int(kb) / 1024


def _backends(db_url: str) -> list[int]:
    """The Postgres backends connected to the benchmark's database."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        sql = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        return [int(r[0]) for r in conn.execute(sql) if r[0] != conn.info.backend_pid]


def _redis_server_pids() -> list[int]:
    """The local redis-server (the whole server: nothing else should use it meanwhile)."""
    found = subprocess.run(["pgrep", "-x", "redis-server"], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Deployment:
    """An API process and worker processes sharing one database and Redis prefix."""

    def __init__(
        self, workdir: Path, db_url: str, concurrency: int, extra_env: dict[str, str]
    ) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.concurrency = concurrency
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
        self.env.update(
            KEEL_HOME=str(workdir / "home"),
            KEEL_MODEL="scripted:sales@200ms",
            KEEL_CHECKPOINT_URL=db_url,
            KEEL_CHECKPOINT_POOL__PREPARE_THRESHOLD="1",
            KEEL_REDIS_URL=REDIS,
            KEEL_REDIS_PREFIX=f"keelbench:{uuid.uuid4().hex[:8]}",
            KEEL_SERVICE__QUEUE="procrastinate",
            KEEL_SERVICE__MAX_QUEUED="100000",
            KEEL_SERVICE__WORKER_HEARTBEAT_S="1",
            KEEL_SERVICE__WORKER_STALLED_AFTER_S="5",
            KEEL_OBSERVABILITY__LOG_LEVEL="warning",
        )
        self.env.update(extra_env)
        self.logs = workdir
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115
        return subprocess.Popen(
            [sys.executable, "-m", "keel", *args], env=self.env, stdout=log, stderr=log
        )

    def start(self, workers: int) -> None:
        self.api = self._spawn("api", "serve", "--port", str(self.port))
        for i in range(workers):
            self.workers.append(
                self._spawn(f"worker{i}", "worker", "--concurrency", str(self.concurrency))
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.api.poll() is not None:
                raise RuntimeError(f"the API did not start; see {self.logs / 'api.log'}")
            time.sleep(0.1)

    def peak_rss_mb(self) -> dict[str, float]:
        """Peak resident memory (VmHWM) of the API and of the largest live worker."""
        peaks = {"api": _peak_rss_mb(self.api.pid) if self.api else 0.0}
        peaks["worker"] = max((_peak_rss_mb(w.pid) for w in self.workers), default=0.0)
        return peaks

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in [self.api, *self.workers] if p is not None]

    def stop(self) -> None:
        for p in [*self.workers, self.api]:
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in [*self.workers, self.api]:
            if p is None:
                continue
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


async def _load(url: str, runs: int, clients: int, kill: Any) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    ok = 0
    started = asyncio.Semaphore(clients)
    async with get_client(url=url, api_key=None, timeout=300) as client:

        async def one(i: int) -> None:
            nonlocal ok
            async with started:
                if i == runs // 3:
                    kill()
                t0 = time.perf_counter()
                try:
                    values = await client.runs.wait(
                        None, "agent", input={"question": QUESTION}, on_completion="keep"
                    )
                except Exception as exc:
                    print(f"  run {i} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                    return
                if not isinstance(values, dict) or "outcome" not in values:
                    print(f"  run {i}: no outcome in {str(values)[:200]}", file=sys.stderr)
                outcome = values.get("outcome") if isinstance(values, dict) else None
                if "revenue was $" in str((outcome or {}).get("output", "")):
                    ok += 1
                    latencies.append(time.perf_counter() - t0)
                else:
                    shown = outcome if outcome is not None else values
                    print(f"  run {i}: unexpected outcome {str(shown)[:300]}", file=sys.stderr)

        t_start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(runs)))
        return latencies, ok, time.perf_counter() - t_start


def _queue_waits(db_url: str) -> list[float]:
    sql = """
        SELECT EXTRACT(EPOCH FROM min(e.at) FILTER (WHERE e.type = 'started')
                                - min(e.at) FILTER (WHERE e.type = 'deferred'))
          FROM procrastinate_jobs j JOIN procrastinate_events e ON e.job_id = j.id
         WHERE j.task_name = 'keel.execute_run'
         GROUP BY j.id
    """
    with psycopg.connect(db_url) as conn:
        return [float(r[0]) for r in conn.execute(sql) if r[0] is not None]


def run_setting(
    workers: int,
    runs: int,
    clients: int,
    concurrency: int,
    kill: bool,
    extra_env: dict[str, str],
) -> Result:
    name = f"keel_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db_url = f"{PG_ADMIN.rpartition('/')[0]}/{name}"
    workdir = Path(tempfile.mkdtemp(prefix="keel-bench-service-"))
    deployment = Deployment(workdir, db_url, concurrency, extra_env)
    try:
        deployment.start(workers)
        asyncio.run(_load(deployment.url, min(20, runs), clients, lambda: None))  # warm-up
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("DELETE FROM procrastinate_events")
        killed: list[int] = []

        def kill_one() -> None:
            if kill and len(deployment.workers) > 1:
                victim = deployment.workers[0]
                victim.send_signal(signal.SIGKILL)
                killed.append(victim.pid)

        assert deployment.api is not None
        api, backends = [deployment.api.pid], _backends(db_url)
        workers_before = {w.pid: _cpu_seconds([w.pid]) for w in deployment.workers}
        redis_server = _redis_server_pids()
        before = {
            "api": _cpu_seconds(api),
            "postgres": _cpu_seconds(backends),
            "redis": _cpu_seconds(redis_server),
        }
        client_before = _own_cpu()
        latencies, ok, seconds = asyncio.run(_load(deployment.url, runs, clients, kill_one))
        cpu = {
            "api": _cpu_seconds(api) - before["api"],
            # a killed worker's CPU is gone with its /proc entry: the survivors' only
            "workers": sum(
                _cpu_seconds([pid]) - at for pid, at in workers_before.items() if pid not in killed
            ),
            "postgres": _cpu_seconds(backends) - before["postgres"],
            "redis": _cpu_seconds(redis_server) - before["redis"],
            "client": _own_cpu() - client_before,
        }
        rss = deployment.peak_rss_mb()
        return Result(
            workers,
            runs,
            ok,
            runs - ok,
            seconds,
            latencies,
            _queue_waits(db_url),
            {k: max(v, 0.0) for k, v in cpu.items()},
            rss,
        )
    finally:
        deployment.stop()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the processes on the way out
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--clients", type=int, default=128, help="runs in flight at once")
    parser.add_argument("--concurrency", type=int, default=64, help="runs per worker at once")
    parser.add_argument("--kill", action="store_true", help="SIGKILL one worker mid-load")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEEL_X=V",
        help="extra setting for the API and workers (repeatable)",
    )
    args = parser.parse_args()
    extra_env = dict(item.split("=", 1) for item in args.env)
    print(
        "| workers | runs | runs/s | e2e P50 / P99 s | queue wait P50 / P99 s "
        "| CPU ms/run API / workers / Postgres / Redis / client | total "
        "| peak RSS MB API / worker "
        "| lost |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for w in args.workers:
        result = run_setting(w, args.runs, args.clients, args.concurrency, args.kill, extra_env)
        print(result.row(), flush=True)


if __name__ == "__main__":
    main()
