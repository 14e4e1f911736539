"""Prometheus metrics, scraped over HTTP and parsed from the exposition format.

In-process runs feed the default registry; worker processes with a shared
`PROMETHEUS_MULTIPROC_DIR` are summed by the standalone exporter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage
from prometheus_client.parser import text_string_to_metric_families

from keel.config import Settings
from keel.errors import ModelCallError
from keel.observability import events
from keel.observability.exporter import serve_metrics
from keel.observability.metrics import mark_worker_dead, metrics_app
from keel.runtime import open_agent
from keel.testing.scripted import ScriptedModel
from tests.sales_truth import SALES_QUESTION

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def scrape() -> Iterator[Callable[[], Samples]]:
    """GET /metrics from a real HTTP endpoint serving this process's registry."""
    server, _ = serve_metrics(0)
    url = f"http://127.0.0.1:{server.server_port}/metrics"

    def get() -> Samples:
        response = httpx.get(url, timeout=5)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        return parse(response.text)

    yield get
    server.shutdown()
    server.server_close()


async def test_runs_model_and_tool_calls_retries_and_fallbacks_are_counted(
    settings_factory: Callable[..., Settings], scrape: Callable[[], Samples]
) -> None:
    before = scrape()
    settings = settings_factory(model="scripted:sales")
    async with open_agent(settings) as agent:
        sales = await agent.arun(SALES_QUESTION)
    flaky = ScriptedModel([ModelCallError("503 busy"), AIMessage("Paris.")])
    async with open_agent(settings_factory(), model=flaky) as agent:
        retried = await agent.arun("Capital of France?")
    dead = ScriptedModel([ModelCallError("401 bad key", kind="degradable")])
    async with open_agent(settings_factory(), model=dead) as agent:
        failed = await agent.arun("Capital of France?")
    assert sales.success and retried.success and not failed.success
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("keel_runs_total", status="success", tier="standard") == 2
    assert delta("keel_runs_total", status="failed", tier="standard") == 1
    assert delta("keel_run_duration_seconds_count", status="success") == 2
    assert delta("keel_run_iterations_count") == 3
    assert delta("keel_run_iterations_sum") == 3 + 1 + 1
    assert delta("keel_run_tokens_sum") == (
        sales.metadata.total_tokens + retried.metadata.total_tokens
    )
    assert delta("keel_model_calls_total", model="scripted:sales", outcome="ok") == 3
    model = agent.context.model_name
    assert delta("keel_model_calls_total", model=model, outcome="error") == 2
    assert delta("keel_model_calls_total", model=model, outcome="ok") == 1
    assert delta("keel_model_call_duration_seconds_count", model="scripted:sales") == 3
    assert delta("keel_tool_calls_total", tool="sql_query", outcome="ok") == 1
    assert delta("keel_tool_calls_total", tool="calculator", outcome="ok") == 1
    assert delta("keel_tool_call_duration_seconds_count", tool="sql_query") == 1
    assert delta("keel_retries_total", error_code="model_error") == 1
    assert delta("keel_fallbacks_total", error_code="model_error") == 1
    assert value(after, "keel_runs_in_flight") == 0


async def test_breaker_rate_limit_cache_budget_and_queue_hooks(
    scrape: Callable[[], Samples],
) -> None:
    before = scrape()
    events.breaker_changed("model:test", "closed", "open", failure_rate=0.8)
    events.rate_limit_waited("model:test", 0.25)
    events.cache_lookup("model", hit=True)
    events.cache_lookup("model", hit=False)
    events.cache_lookup("model", hit=False)
    events.budget_decision("deny", spent_usd=1.2, limit_usd=1.0)
    events.queue_depth("runs", 7)
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert value(after, "keel_breaker_state", breaker="model:test") == 2
    assert delta("keel_breaker_transitions_total", breaker="model:test", to="open") == 1
    assert delta("keel_rate_limit_wait_seconds_sum", limiter="model:test") == 0.25
    assert delta("keel_cache_requests_total", cache="model", result="hit") == 1
    assert delta("keel_cache_requests_total", cache="model", result="miss") == 2
    assert delta("keel_budget_decisions_total", decision="deny") == 1
    assert value(after, "keel_queue_depth", queue="runs") == 7
    events.breaker_changed("model:test", "open", "half_open")
    assert value(scrape(), "keel_breaker_state", breaker="model:test") == 1


async def test_metrics_asgi_app_for_the_service() -> None:
    transport = httpx.ASGITransport(app=metrics_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://keel") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    names = {name for name, _ in parse(response.text)}
    assert {"keel_runs_total", "keel_runs_in_flight"} <= names


WORKER = """
import asyncio, sys
from keel.config import load_settings
from keel.runtime import open_agent

async def main():
    settings = load_settings(model="scripted:echo", checkpoint_url="memory://")
    async with open_agent(settings) as agent:
        for _ in range(int(sys.argv[1])):
            assert (await agent.arun("hello")).success

asyncio.run(main())
"""


def test_worker_processes_are_summed_by_the_standalone_exporter(tmp_path: Path) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "LANGSMITH_"))}
    env.update(PROMETHEUS_MULTIPROC_DIR=str(shared), KEEL_HOME=str(tmp_path / "home"))
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(n)], env=env, stderr=subprocess.PIPE)
        for n in (2, 3)
    ]
    for w in workers:
        _, err = w.communicate(timeout=120)
        assert w.returncode == 0, err.decode()

    exporter = subprocess.Popen(
        [sys.executable, "-m", "keel.observability.exporter", "--port", "0", "--dir", str(shared)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert exporter.stdout is not None
        line = exporter.stdout.readline()
        url = line.strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics"), line
        samples = parse(httpx.get(url, timeout=5).text)
    finally:
        exporter.terminate()
        exporter.wait(timeout=10)

    assert value(samples, "keel_runs_total", status="success", tier="standard") == 5
    assert value(samples, "keel_model_calls_total", model="scripted:echo", outcome="ok") == 5
    assert value(samples, "keel_run_duration_seconds_count", status="success") == 5
    assert value(samples, "keel_runs_in_flight") == 0

    for w in workers:
        assert (shared / f"gauge_livesum_{w.pid}.db").exists()
        mark_worker_dead(w.pid, shared)
        assert not (shared / f"gauge_livesum_{w.pid}.db").exists()


def test_exporter_rejects_a_missing_folder(tmp_path: Any) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "keel.observability.exporter", "--dir", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "does not exist" in done.stderr


async def test_breaker_transitions_and_rate_limit_waits_from_the_guard(
    scrape: Callable[[], Samples],
) -> None:
    import asyncio

    from keel.config import BreakerSettings, RateLimitSettings
    from keel.resilience.guard import Resilience

    now = [1000.0]

    def clock() -> float:
        return now[0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds
        await asyncio.sleep(0)

    guard = Resilience(
        BreakerSettings(min_calls=2, failure_rate=0.5, open_s=30),
        RateLimitSettings(model_concurrency=1, max_wait_s=10),
    )
    before = scrape()
    model = "obs-test-model"

    async def call(fail: bool, hold: asyncio.Event | None = None) -> None:
        async with guard.model_call(
            model, tokens=1, clock=clock, sleep=sleep, deadline=clock() + 60
        ):
            if hold is not None:
                await hold.wait()
            if fail:
                raise ModelCallError("503 busy")

    release = asyncio.Event()
    holder = asyncio.create_task(call(False, release))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(call(False))
    for _ in range(5):  # the waiter polls for the slot, advancing the fake clock
        await asyncio.sleep(0)
    release.set()
    await asyncio.gather(holder, waiter)
    for _ in range(2):
        with pytest.raises(ModelCallError):
            await call(True)
    after = scrape()

    name = f"model:{model}"
    waits = value(after, "keel_rate_limit_wait_seconds_count", limiter=name) - value(
        before, "keel_rate_limit_wait_seconds_count", limiter=name
    )
    assert waits == 1
    assert value(after, "keel_rate_limit_wait_seconds_sum", limiter=name) > 0
    assert value(after, "keel_breaker_state", breaker=name) == 2
    assert value(after, "keel_breaker_transitions_total", breaker=name, to="open") == 1
