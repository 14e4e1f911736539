"""Run webhooks: refused unless allowed, POSTed once when a run ends, retried on 5xx.

The receiver is a stdlib HTTP server on 127.0.0.1 in a thread; runs execute in the API
process or on a real `keel worker` (procrastinate on Postgres).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from prometheus_client import REGISTRY

from keel.config import Settings
from tests.integration.service_server import running_server, workers
from tests.sales_truth import SALES_QUESTION

USER = {"messages": [{"role": "user", "content": SALES_QUESTION}]}
LOOPBACK = '["127.0.0.1"]'


class Receiver:
    """Records every POST; answers with `statuses` in turn, then 200."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.posts: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.posts.append((dict(self.headers), json.loads(body)))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=t"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait_for(self, count: int, timeout: float = 30) -> list[tuple[dict[str, str], Any]]:
        deadline = time.monotonic() + timeout
        while len(self.posts) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.posts)


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(statuses: list[int] | None = None) -> Receiver:
        r = Receiver(statuses)
        r.thread.start()
        made.append(r)
        return r

    yield make
    for r in made:
        r.server.shutdown()
        r.server.server_close()


def _settings(factory: Callable[..., Settings], tmp_path: Path, **service: Any) -> Settings:
    return factory(
        model="scripted:sales",
        checkpoint_url=f"sqlite:///{tmp_path / 'cp.sqlite'}",
        service=service,
    )


def _failed() -> float:
    sample = REGISTRY.get_sample_value("keel_webhook_deliveries_total", {"outcome": "failed"})
    return sample or 0.0


def _check(post: tuple[dict[str, str], Any], run_id: str, thread_id: str, status: str) -> Any:
    headers, body = post
    assert headers["Idempotency-Key"] == headers["X-Keel-Run-Id"] == run_id
    assert headers["Content-Type"] == "application/json"
    assert (body["run_id"], body["thread_id"], body["status"]) == (run_id, thread_id, status)
    assert body["webhook_sent_at"] and body["kwargs"]["webhook"]
    assert "role" not in body["kwargs"]
    return body


def test_webhooks_are_off_by_default(
    settings_factory: Callable[..., Settings], tmp_path: Path, receiver: Callable[..., Receiver]
) -> None:
    hook = receiver()
    with running_server(_settings(settings_factory, tmp_path)) as url, httpx.Client() as http:
        body = {"assistant_id": "agent", "input": {"question": "q"}, "webhook": hook.url}
        for path in ("/runs", "/runs/wait", "/runs/stream"):
            answer = http.post(url + path, json=body)
            assert answer.status_code == 422, answer.text
            assert "KEEL_SERVICE__WEBHOOK_ALLOWED_HOSTS" in answer.json()["message"]
        assert http.post(url + "/threads/search", json={}).json() == [], "no thread left"
    time.sleep(0.3)
    assert hook.posts == []


def test_disallowed_webhooks_are_refused_at_creation(
    settings_factory: Callable[..., Settings], tmp_path: Path, receiver: Callable[..., Receiver]
) -> None:
    hook = receiver()
    port = hook.server.server_address[1]
    settings = _settings(settings_factory, tmp_path, webhook_allowed_hosts=["127.0.0.1"])
    with running_server(settings) as url, httpx.Client() as http:
        tid = http.post(url + "/threads", json={}).json()["thread_id"]
        bad = {
            f"http://localhost:{port}/hook": "'localhost' is not allowed",
            f"http://127.0.0.2:{port}/hook": "is not allowed",
            f"ftp://127.0.0.1:{port}/hook": "http or https",
            f"http://user:secret@127.0.0.1:{port}/hook": "credentials",
            "http://127.0.0.1:99999/hook": "not a valid URL",
            "http:///hook": "no host",
        }
        for webhook, says in bad.items():
            body = {"assistant_id": "agent", "input": {"question": "q"}, "webhook": webhook}
            answer = http.post(f"{url}/threads/{tid}/runs", json=body)
            assert answer.status_code == 422, (webhook, answer.text)
            assert says in answer.json()["message"], webhook
        batch = [{"assistant_id": "agent", "input": {"question": "q"}, "webhook": hook.url}] * 2
        batch[1] = {**batch[1], "webhook": f"http://localhost:{port}/hook"}
        answer = http.post(url + "/runs/batch", json=batch)
        assert answer.status_code == 422 and "runs[1]" in answer.json()["message"]
        assert http.get(f"{url}/threads/{tid}/runs").json() == [], "no run was created"
    time.sleep(0.3)
    assert hook.posts == []


async def test_in_process_runs_post_their_webhook_once(
    settings_factory: Callable[..., Settings], tmp_path: Path, receiver: Callable[..., Receiver]
) -> None:
    hook = receiver()
    settings = _settings(settings_factory, tmp_path, webhook_allowed_hosts=["127.0.0.1"])
    with running_server(settings) as url:
        async with get_client(url=url, api_key=None) as client:
            tid = (await client.threads.create())["thread_id"]
            values = await client.runs.wait(tid, "agent", input=USER, webhook=hook.url)
            run = (await client.runs.list(tid))[0]
            [post] = await asyncio.to_thread(hook.wait_for, 1)
            body = _check(post, run["run_id"], tid, "success")
            assert body["values"] == values == (await client.threads.get_state(tid))["values"]
            assert "Their total revenue was $" in body["values"]["outcome"]["output"]
            assert {k: body[k] for k in run if k != "updated_at"} == {
                **{k: v for k, v in run.items() if k != "updated_at"},
                "status": "success",
            }
            stateless = await client.runs.create(
                None, "agent", input={"question": "hello"}, webhook=hook.url
            )
            posts = await asyncio.to_thread(hook.wait_for, 2)
            _check(posts[1], stateless["run_id"], stateless["thread_id"], "success")
            await asyncio.sleep(0.5)
    assert len(hook.posts) == 2, "one POST a run"


async def test_a_5xx_is_retried_and_exhausted_retries_are_counted(
    settings_factory: Callable[..., Settings], tmp_path: Path, receiver: Callable[..., Receiver]
) -> None:
    flaky = receiver([500, 500])
    down = receiver([503] * 10)
    settings = _settings(
        settings_factory,
        tmp_path,
        webhook_allowed_hosts=["127.0.0.1"],
        webhook_backoff_s=0.05,
        webhook_attempts=3,
    )
    failed_before = _failed()
    with running_server(settings) as url:
        async with get_client(url=url, api_key=None) as client:
            tid = (await client.threads.create())["thread_id"]
            await client.runs.wait(tid, "agent", input={"question": "hi"}, webhook=flaky.url)
            run_id = (await client.runs.list(tid))[0]["run_id"]
            posts = await asyncio.to_thread(flaky.wait_for, 3)
            assert [p[0]["Idempotency-Key"] for p in posts] == [run_id] * 3
            await client.runs.wait(tid, "agent", input={"question": "hi"}, webhook=down.url)
            await asyncio.to_thread(down.wait_for, 3)
            await asyncio.sleep(0.5)
    assert len(flaky.posts) == 3, "500, 500, then 200: three attempts, no more"
    assert len(down.posts) == 3, "attempts are bounded"
    assert _failed() == failed_before + 1


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_worker_posts_the_webhook_of_the_run_it_finished(
    distributed: dict[str, Any],
    receiver: Callable[..., Receiver],
) -> None:
    hook = receiver()
    distributed["env"]["KEEL_SERVICE__WEBHOOK_ALLOWED_HOSTS"] = LOOPBACK
    settings: Settings = distributed["settings"]
    service = settings.service.model_copy(update={"webhook_allowed_hosts": ("127.0.0.1",)})
    settings = settings.model_copy(update={"service": service})
    with running_server(settings) as url, workers(distributed, 1, 2):
        async with get_client(url=url, api_key=None) as client:
            tid = (await client.threads.create())["thread_id"]
            values = await asyncio.wait_for(
                client.runs.wait(tid, "agent", input=USER, webhook=hook.url), 60
            )
            run_id = (await client.runs.list(tid))[0]["run_id"]
            [post] = await asyncio.to_thread(hook.wait_for, 1)
            body = _check(post, run_id, tid, "success")
            assert body["values"] == values
            assert "Their total revenue was $" in body["values"]["outcome"]["output"]
            await asyncio.sleep(0.5)
    assert len(hook.posts) == 1
