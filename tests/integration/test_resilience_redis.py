"""Breakers, rate limits and concurrency caps shared by separate processes through Redis.

Each test starts real worker processes (`tests/integration/_redis_worker.py`) that share
only the Redis server (and, for agent runs, the chaos model server) with each other.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keel.config import RateLimitSettings
from keel.errors import ErrorCode, RateLimitedError
from keel.resilience import Resilience
from keel.testing.chaos import ChaosServer, FaultPlan
from keel.testing.chaos_tasks import arithmetic_tasks, solve_task

pytestmark = [pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]
WORKER = [sys.executable, "-m", "tests.integration._redis_worker"]


def worker(command: str, args: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*WORKER, command, json.dumps(args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def events(proc: subprocess.Popen[str], timeout: float = 60) -> list[dict[str, Any]]:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@pytest.fixture
def chaos() -> Iterator[ChaosServer]:
    with ChaosServer(solve_task, faults=FaultPlan()) as server:
        yield server


def test_breaker_opened_by_one_process_stops_another(
    chaos: ChaosServer, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    question = arithmetic_tasks(1, seed=5)[0].question
    settings = {
        "model": "openai:chaos",
        "openai_base_url": chaos.base_url,
        "openai_api_key": "test-key",
        "checkpoint_url": "memory://",
        "home": str(tmp_path / "home"),
        "redis_url": redis_url,
        "redis_prefix": redis_prefix,
        "retry": {"initial_s": 0.0, "max_s": 0.0},
        "limits": {"max_model_attempts": 2, "model_timeout_s": 2},
        "breaker": {"min_calls": 2, "failure_rate": 0.5, "open_s": 60},
    }
    chaos.force("unavailable", "unavailable")
    [first] = events(worker("agent", {"settings": settings, "question": question}))
    assert first == {
        "success": False,
        "error_code": ErrorCode.MODEL_UNAVAILABLE,
        "signals": ["retry", "degrade"],
        "breaker": "open",
    }
    calls_before = chaos.stats.requests
    [second] = events(worker("agent", {"settings": settings, "question": question}))
    assert second["error_code"] == ErrorCode.BREAKER_OPEN
    assert second["signals"] == ["degrade"]
    assert chaos.stats.requests == calls_before, "the second worker sent no request"


def test_tenant_run_rate_is_shared(redis_url: str, redis_prefix: str) -> None:
    settings = {
        "redis_url": redis_url,
        "redis_prefix": redis_prefix,
        "rate_limits": {"tenant_runs_per_minute": 5},
    }
    args = {"settings": settings, "tenant": "acme", "attempts": 5}
    procs = [worker("admit", args), worker("admit", args)]
    admitted = [events(p)[0]["admitted"] for p in procs]
    assert sum(admitted) == 5, admitted


def test_concurrency_cap_and_request_rate_are_shared(redis_url: str, redis_prefix: str) -> None:
    limits = {"model_concurrency": 1, "model_requests_per_minute": 2, "max_wait_s": 0.3}
    settings = {"redis_url": redis_url, "redis_prefix": redis_prefix, "rate_limits": limits}
    holder = worker("hold", {"settings": settings, "model": "openai:m", "seconds": 1.5})
    assert holder.stdout is not None
    assert json.loads(holder.stdout.readline()) == {"event": "holding"}

    async def call_here(model: str) -> str:
        guard = Resilience(
            rate_limits=RateLimitSettings(**limits), redis_url=redis_url, prefix=redis_prefix
        )
        try:
            async with guard.model_call(
                model, tokens=1, clock=time.time, sleep=asyncio.sleep, deadline=time.time() + 5
            ):
                return "called"
        except RateLimitedError as exc:
            return str(exc)
        finally:
            await guard.aclose()

    refused = asyncio.run(call_here("openai:m"))
    assert "concurrent calls" in refused, "the other process holds the only slot"
    assert events(holder) == [{"event": "released"}]
    assert asyncio.run(call_here("openai:m")) == "called"  # slot free; 2nd request of 2/min
    refused = asyncio.run(call_here("openai:m"))
    assert "per minute used up" in refused, "both processes' requests count in one window"
