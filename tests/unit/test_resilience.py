"""The classifier, retry timing, the breaker state machine (memory and Redis) and chaos draws."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from keel.config import BreakerSettings, RetrySettings
from keel.errors import (
    CircuitOpenError,
    ErrorCode,
    RateLimitedError,
    ToolFatalError,
    ToolTransientError,
    UsageError,
)
from keel.resilience import (
    Breakers,
    MemoryBreakerStore,
    RedisBreakerStore,
    retry_after,
    retry_delay,
    retry_on,
)
from keel.resilience.degrade import allows_direct_answer, allows_other_tier, tier_candidates
from keel.testing.chaos import ChaosServer, FaultPlan, chaos_tool
from keel.testing.chaos_tasks import arithmetic_tasks, is_correct, solve_task
from keel.tools import calculator
from keel.tools.registry import ToolContext

REQUEST = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")


def status_error(cls: type[openai.APIStatusError], status: int, **kw: Any) -> Exception:
    headers = kw.pop("headers", {})
    body = kw.pop("body", None)
    response = httpx.Response(status, headers=headers, request=REQUEST)
    return cls(kw.pop("message", "boom"), response=response, body=body)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "1.5", "retry-after-ms": "x"}, 1.5),
        (
            {
                "retry-after": "Wed, 21 Oct 2026 07:28:30 GMT",
                "date": "Wed, 21 Oct 2026 07:28:00 GMT",
            },
            30.0,
        ),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_header(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after(httpx.Headers(headers)) == expected


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (
            status_error(openai.RateLimitError, 429, headers={"retry-after": "2"}),
            "retryable",
            ErrorCode.MODEL_RATE_LIMITED,
        ),
        (status_error(openai.InternalServerError, 500), "retryable", ErrorCode.MODEL_UNAVAILABLE),
        (status_error(openai.InternalServerError, 503), "retryable", ErrorCode.MODEL_UNAVAILABLE),
        (status_error(openai.AuthenticationError, 401), "degradable", ErrorCode.MODEL_REJECTED),
        (status_error(openai.PermissionDeniedError, 403), "degradable", ErrorCode.MODEL_REJECTED),
        (status_error(openai.NotFoundError, 404), "degradable", ErrorCode.MODEL_REJECTED),
        (
            status_error(
                openai.BadRequestError,
                400,
                message="maximum context length exceeded",
                body={"code": "context_length_exceeded"},
            ),
            "degradable",
            ErrorCode.CONTEXT_TOO_LONG,
        ),
        (openai.APITimeoutError(request=REQUEST), "retryable", ErrorCode.MODEL_TIMEOUT),
        (openai.APIConnectionError(request=REQUEST), "retryable", ErrorCode.MODEL_UNAVAILABLE),
        (httpx.RemoteProtocolError("reset"), "retryable", ErrorCode.MODEL_UNAVAILABLE),
        (ConnectionResetError(), "retryable", ErrorCode.MODEL_UNAVAILABLE),
        (TimeoutError(), "retryable", ErrorCode.MODEL_TIMEOUT),
        (CircuitOpenError("open"), "degradable", ErrorCode.BREAKER_OPEN),
        (RateLimitedError("slow down"), "degradable", ErrorCode.RATE_LIMITED),
        (UsageError("bad config"), "fatal", ErrorCode.USAGE_INVALID),
        (TypeError("bug"), "fatal", ErrorCode.MODEL_ERROR),
        (asyncio.CancelledError(), "fatal", ErrorCode.CANCELLED),
    ],
)
def test_model_failures_are_classified(exc: BaseException, kind: str, code: ErrorCode) -> None:
    verdict = retry_on(exc)
    assert (verdict.kind, verdict.code) == (kind, code)


def test_429_carries_retry_after() -> None:
    exc = status_error(openai.RateLimitError, 429, headers={"retry-after-ms": "1200"})
    assert retry_on(exc).retry_after == 1.2


class FlakyBackend(Exception):
    """A tool's own 'try later' exception."""


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (FlakyBackend(), "retryable", ErrorCode.TOOL_FAILED),
        (ToolTransientError("later"), "retryable", ErrorCode.TOOL_FAILED),
        (TimeoutError(), "retryable", ErrorCode.TOOL_TIMEOUT),
        (ToolFatalError("gone"), "degradable", ErrorCode.TOOL_FAILED),
        (ConnectionError("undeclared"), "retryable", ErrorCode.TOOL_FAILED),
        (ValueError("city not found"), "retryable", ErrorCode.TOOL_ERROR),
        (KeyError("Atlantis"), "retryable", ErrorCode.TOOL_ERROR),
        (TypeError("bug"), "fatal", ErrorCode.TOOL_FAILED),
        (NameError("bug"), "fatal", ErrorCode.TOOL_FAILED),
        (AttributeError("bug"), "fatal", ErrorCode.TOOL_FAILED),
    ],
)
def test_tool_failures_follow_declarations(exc: BaseException, kind: str, code: ErrorCode) -> None:
    verdict = retry_on(exc, transient=(FlakyBackend,), tool=True)
    assert (verdict.kind, verdict.code) == (kind, code)


def test_retry_delay_is_capped_jitter_stretched_to_retry_after() -> None:
    policy = RetrySettings(initial_s=0.5, max_s=4.0, multiplier=2.0)
    rng = random.Random(1)
    for attempt in range(1, 12):
        cap = min(4.0, 0.5 * 2 ** (attempt - 1))
        assert 0.0 <= retry_delay(attempt, policy, rng) <= cap
    assert retry_delay(1, policy, rng, retry_after=10.0) == 10.0
    a = [retry_delay(3, policy, random.Random(7)) for _ in range(3)]
    assert len(set(a)) == 1, "same seed, same delay"


POLICY = BreakerSettings(window_s=10, min_calls=4, failure_rate=0.5, open_s=5, half_open_calls=2)


@pytest.fixture(params=["memory", "redis", "redis-closed-ttl"])
async def breakers(request: pytest.FixtureRequest) -> AsyncIterator[Breakers]:
    if request.param == "memory":
        yield Breakers(POLICY, MemoryBreakerStore())
        return
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(request.getfixturevalue("redis_url"))
    store = RedisBreakerStore(client, request.getfixturevalue("redis_prefix"))
    ttl = 1.0 if request.param == "redis-closed-ttl" else 0.0
    yield Breakers(POLICY, store, closed_ttl_s=ttl)
    await client.aclose()


async def test_a_closed_breaker_is_trusted_for_its_ttl_then_asked_again(
    redis_url: str, redis_prefix: str
) -> None:
    """Two processes share a breaker in Redis: one that just saw it closed skips the round
    trip for `closed_ttl_s`, so an opening elsewhere stops it within that delay."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    try:
        store = RedisBreakerStore(client, redis_prefix)
        asks = 0
        allow = store.allow

        async def counted_allow(*args: Any) -> tuple[str, bool]:
            nonlocal asks
            asks += 1
            return await allow(*args)

        store.allow = counted_allow  # type: ignore[method-assign]
        here = Breakers(POLICY, store, closed_ttl_s=1.0)
        elsewhere = Breakers(POLICY, RedisBreakerStore(client, redis_prefix))
        uncached = Breakers(POLICY, RedisBreakerStore(client, redis_prefix))
        t = 2_000.0
        for i in range(10):
            assert await here.check("m", t + i * 0.05) == "closed"
        assert asks == 1
        for _ in range(4):
            await elsewhere.record("m", False, t + 0.5)  # another process opens it
        assert await here.check("m", t + 0.9) == "closed"  # still within the TTL
        with pytest.raises(CircuitOpenError):
            await uncached.check("m", t + 0.9)  # TTL 0: asks every time
        with pytest.raises(CircuitOpenError):
            await here.check("m", t + 1.1)  # the TTL ran out: asked, refused
        assert asks == 2
        with pytest.raises(CircuitOpenError):
            await here.check("m", t + 1.2)  # an open breaker is never cached
        assert asks == 3
    finally:
        await client.aclose()


async def test_breaker_state_machine(breakers: Breakers) -> None:
    t = 1_000.0
    for ok in (False, False, False):  # below min_calls: stays closed
        assert await breakers.record("m", ok, t) == "closed"
    assert await breakers.record("m", True, t + 1) == "open"  # 3 of 4 failed
    with pytest.raises(CircuitOpenError):
        await breakers.check("m", t + 2)
    assert await breakers.check("m", t + 6) == "half_open"  # first probe
    assert await breakers.check("m", t + 6) == "half_open"  # second probe
    with pytest.raises(CircuitOpenError):
        await breakers.check("m", t + 6)  # only two probes
    assert await breakers.record("m", True, t + 6) == "half_open"
    assert await breakers.record("m", True, t + 6) == "closed"
    assert await breakers.check("m", t + 7) == "closed"


async def test_breaker_probe_failure_reopens_and_old_failures_expire(breakers: Breakers) -> None:
    t = 5_000.0
    for ok in (False, False, True, True):
        await breakers.record("x", ok, t)
    assert await breakers.state("x") == "open"
    await breakers.check("x", t + 5)
    assert await breakers.record("x", False, t + 5) == "open"
    with pytest.raises(CircuitOpenError):
        await breakers.check("x", t + 9)
    # a different breaker: failures older than the window no longer count
    for ok in (False, False, False):
        await breakers.record("y", ok, t)
    assert await breakers.record("y", True, t + 11) == "closed"
    assert await breakers.record("y", False, t + 12) == "closed"


async def test_expired_and_cleared_failures_stop_counting(breakers: Breakers) -> None:
    """The failed share is of the calls still in the window: failures that left it (or
    were cleared when a probe closed the breaker) count no more."""
    t = 9_000.0
    for i in range(30):  # 30 failures, spread so the breaker never sees 4 calls at once
        await breakers.record("z", False, t + i * 11)
    t += 30 * 11
    for ok in (True, True, True, False):  # the window: 3 successes, 1 failure (25 %)
        assert await breakers.record("z", ok, t) == "closed"
    for ok in (False, False, False, True):  # 4 failures of 8 (50 %): opens
        state = await breakers.record("z", ok, t + 1)
    assert state == "open"
    await breakers.check("z", t + 7)
    await breakers.check("z", t + 7)
    await breakers.record("z", True, t + 7)
    assert await breakers.record("z", True, t + 7) == "closed"  # the probes cleared the window
    for ok in (True, True, True, False):
        assert await breakers.record("z", ok, t + 8) == "closed"


def test_chaos_draws_are_seeded_and_near_the_rate() -> None:
    def draws(seed: int) -> list[Any]:
        server = ChaosServer(solve_task, faults=FaultPlan(rate=0.3, seed=seed))
        return [server._draw(f"q{i}|0", 0) for i in range(2000)]

    first, again, other = draws(1), draws(1), draws(2)
    assert first == again and first != other
    share = sum(d is not None for d in first) / len(first)
    assert 0.26 < share < 0.34
    assert len({d for d in first if d is not None}) == 9, "every default kind appears"


async def test_chaos_tool_raises_declared_transient_errors() -> None:
    flaky = chaos_tool(calculator, rate=1.0, kinds=("error",))
    assert ToolTransientError in flaky.transient
    args = flaky.validate({"expression": "2+2"})
    ctx = ToolContext(settings=None, tool_call_id="c1")  # type: ignore[arg-type]
    with pytest.raises(ToolTransientError):
        await flaky.invoke(args, ctx)
    calm = chaos_tool(calculator, rate=0.0)
    assert await calm.invoke(args, ctx) == "4"


def test_tasks_have_independent_answers() -> None:
    tasks = arithmetic_tasks(20, seed=4)
    assert len({t.question for t in tasks}) == 20
    assert {t.steps for t in tasks} == {1, 2}
    assert is_correct(tasks[0], f"The answer is {tasks[0].answer}.")
    assert not is_correct(tasks[0], f"The answer is 1{tasks[0].answer}.")


def failure(code: ErrorCode, kind: str = "degradable", node: str = "reason") -> Any:
    return {
        "node": node,
        "code": str(code),
        "kind": kind,
        "message": "",
        "iteration": 0,
        "attempt": 0,
    }


@pytest.mark.parametrize(
    ("record", "other_tier", "direct"),
    [
        (failure(ErrorCode.MODEL_UNAVAILABLE, "retryable"), True, False),
        (failure(ErrorCode.MODEL_REJECTED), True, False),
        (failure(ErrorCode.BREAKER_OPEN), True, False),
        (failure(ErrorCode.MALFORMED_OUTPUT), True, True),
        (failure(ErrorCode.CONTEXT_TOO_LONG), True, True),
        (failure(ErrorCode.ITERATION_LIMIT, node="observe"), False, True),
        (failure(ErrorCode.DEADLINE_EXCEEDED), False, False),
        (failure(ErrorCode.BUDGET_EXCEEDED), False, False),
        (failure(ErrorCode.TOOL_FAILED, node="act"), False, False),
        (failure(ErrorCode.BREAKER_OPEN, node="act"), False, False),
        (failure(ErrorCode.MODEL_ERROR, "fatal"), False, False),
    ],
)
def test_degradation_policy(record: Any, other_tier: bool, direct: bool) -> None:
    assert allows_other_tier(record) is other_tier
    assert allows_direct_answer(record) is direct


def test_tier_candidates_go_cheaper_first_then_stronger() -> None:
    names = ["simple", "standard", "complex"]
    assert tier_candidates(names, "standard", []) == ["simple", "complex"]
    assert tier_candidates(names, "complex", ["standard"]) == ["simple"]
    assert tier_candidates(names, "simple", ["standard"]) == ["complex"]
    assert tier_candidates(["standard"], "standard", []) == []


async def test_guard_fails_open_when_redis_is_unreachable() -> None:
    import time

    from keel.config import RateLimitSettings
    from keel.resilience import Resilience

    guard = Resilience(
        rate_limits=RateLimitSettings(model_requests_per_minute=1, model_concurrency=1),
        redis_url="redis://127.0.0.1:1/0",
    )
    calls = 0
    for _ in range(2):
        async with guard.model_call(
            "m", tokens=1, clock=time.time, sleep=asyncio.sleep, deadline=time.time() + 5
        ):
            calls += 1
    await guard.admit_run("acme")
    await guard.aclose()
    assert calls == 2, "losing the shared store must not stop every run"
