"""A separate worker process for the Redis-sharing tests.

`python -m tests.integration._redis_worker <command> '<json>'` runs one command against the
shared Redis and prints one JSON line per event, so the test (another process) can assert
what this process saw.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from keel.config import load_settings
from keel.errors import CircuitOpenError, RateLimitedError
from keel.resilience import Resilience


def emit(**event: Any) -> None:
    print(json.dumps(event), flush=True)


async def run_agent(args: dict[str, Any]) -> None:
    from keel.runtime import open_agent
    from keel.tools import calculator
    from keel.tools.registry import ToolRegistry

    settings = load_settings(**args["settings"])
    async with open_agent(settings, tools=ToolRegistry.of([calculator])) as agent:
        result = await agent.arun(args["question"])
        state = await agent.context.resilience.breaker_state(f"model:{settings.model}")
    emit(
        success=result.success,
        error_code=result.error_code,
        signals=[s["signal"] for s in result.metadata.trace if s["node"] == "reason"],
        breaker=state,
    )


async def admit(args: dict[str, Any]) -> None:
    settings = load_settings(**args["settings"])
    guard = Resilience.from_settings(settings)
    admitted = 0
    for _ in range(args["attempts"]):
        try:
            await guard.admit_run(args["tenant"])
            admitted += 1
        except RateLimitedError:
            pass
    await guard.aclose()
    emit(admitted=admitted)


async def hold(args: dict[str, Any]) -> None:
    """Take one model slot (and one request of its rate), report, hold it, release."""
    settings = load_settings(**args["settings"])
    guard = Resilience.from_settings(settings)
    try:
        async with guard.model_call(
            args["model"], tokens=1, clock=time.time, sleep=asyncio.sleep, deadline=time.time() + 5
        ):
            emit(event="holding")
            await asyncio.sleep(args["seconds"])
        emit(event="released")
    except (RateLimitedError, CircuitOpenError) as exc:
        emit(event="refused", code=str(exc.code))
    finally:
        await guard.aclose()


COMMANDS = {"agent": run_agent, "admit": admit, "hold": hold}

if __name__ == "__main__":
    from keel.observability.logs import configure_logging

    configure_logging(load_settings())  # log lines to stderr: stdout carries the events
    asyncio.run(COMMANDS[sys.argv[1]](json.loads(sys.argv[2])))
