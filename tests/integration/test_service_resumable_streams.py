"""Resumable streams: a client that loses its SSE connection reconnects with the last event
id it saw and gets exactly the events it missed (no gap, no duplicate), then the rest live.

Driven by the official `langgraph-sdk` (`stream_resumable`, `join_stream(last_event_id=…)`)
against a running server: runs executed in the API process, and on `keel worker`s (Redis).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.schema import StreamPart

from tests.integration.service_server import running_server, workers
from tests.sales_truth import SALES_QUESTION

USER = {"messages": [{"role": "user", "content": SALES_QUESTION}]}
MODES = ["updates", "values"]


def _shape(parts: list[StreamPart]) -> list[str]:
    """Event names, with each `updates` event's node: what a stream of this run must show."""
    return [f"updates:{next(iter(p.data))}" if p.event == "updates" else p.event for p in parts]


async def _first(stream: AsyncIterator[StreamPart], n: int) -> list[StreamPart]:
    """Read `n` parts, then hang up (the connection closes)."""
    parts: list[StreamPart] = []
    async with aclosing(stream) as open_stream:  # type: ignore[type-var]
        async for part in open_stream:
            parts.append(part)
            if len(parts) == n:
                break
    return parts


def _assert_resumed(head: list[StreamPart], tail: list[StreamPart], full: list[StreamPart]) -> None:
    joined = head + tail
    ids = [p.id for p in joined]
    assert all(ids), f"every event carries an id: {ids}"
    assert len(set(ids)) == len(ids), f"no event twice: {ids}"
    assert joined[-1].event == "end" and joined[-1].data["status"] == "success"
    # the reconnect replayed exactly what the first connection missed
    assert [(p.id, p.event, p.data) for p in joined] == [(p.id, p.event, p.data) for p in full]


async def _resume_run(
    client: LangGraphClient, stream: AsyncIterator[StreamPart], tid: str, keep: int
) -> tuple[list[StreamPart], list[StreamPart], list[StreamPart]]:
    """Read `keep` parts of `stream`, hang up, rejoin after the last id; and a full replay."""
    head = await _first(stream, keep)
    assert head[0].event == "metadata"
    run_id = head[0].data["run_id"]
    tail = [
        p
        async for p in client.runs.join_stream(
            tid, run_id, last_event_id=head[-1].id, stream_mode=MODES
        )
    ]
    full = [p async for p in client.runs.join_stream(tid, run_id, stream_mode=MODES)]
    return head, tail, full


async def _reference(client: LangGraphClient) -> list[str]:
    """The shape of one uninterrupted stream of the same question."""
    tid = (await client.threads.create())["thread_id"]
    parts = [p async for p in client.runs.stream(tid, "agent", input=USER, stream_mode=MODES)]
    return _shape(parts)


async def _bad_ids(url: str, tid: str, run_id: str, future: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for bad, status in [("garbage", 422), ("-1", 422), (future, 422), ("x" * 100, 422)]:
            r = await http.get(
                f"/threads/{tid}/runs/{run_id}/stream", headers={"Last-Event-ID": bad}
            )
            assert r.status_code == status, (bad, r.status_code, r.text)
            body = r.json()
            assert isinstance(body["error"], str) and isinstance(body["message"], str)


async def test_resume_an_in_process_stream(slow_server: str) -> None:
    async with get_client(url=slow_server, api_key=None) as client:
        reference = await _reference(client)
        tid = (await client.threads.create())["thread_id"]
        stream = client.runs.stream(
            tid, "agent", input=USER, stream_mode=MODES, stream_resumable=True
        )
        head, tail, full = await asyncio.wait_for(_resume_run(client, stream, tid, 3), 120)
        _assert_resumed(head, tail, full)
        assert _shape(full) == reference
        assert [p.id for p in full] == [str(i) for i in range(1, len(full) + 1)]
        run_id = head[0].data["run_id"]
        # the last event's id replays nothing but is accepted; the one after it is not sent yet
        async with httpx.AsyncClient(base_url=slow_server, timeout=30) as http:
            r = await http.get(
                f"/threads/{tid}/runs/{run_id}/stream", headers={"Last-Event-ID": full[-1].id}
            )
            assert r.status_code == 200 and r.text == ""
        await _bad_ids(slow_server, tid, run_id, str(len(full) + 1))


async def test_stream_response_names_where_to_reconnect(slow_server: str) -> None:
    async with httpx.AsyncClient(base_url=slow_server, timeout=60) as http:
        body = {"assistant_id": "agent", "input": {"question": "hello"}}
        async with http.stream("POST", "/runs/stream", json=body) as r:
            assert r.status_code == 200
            location = r.headers["location"]
            text = (await r.aread()).decode()
        run_id = text.split('"run_id":"')[1].split('"')[0]
        assert location.endswith(f"/runs/{run_id}/stream")
        assert text.startswith("id: 1\nevent: metadata\n")


@pytest.mark.postgres
@pytest.mark.redis
async def test_resume_streams_of_runs_on_workers(distributed: dict[str, Any]) -> None:
    distributed["env"]["KEEL_MODEL"] = "scripted:sales@200ms"
    with running_server(distributed["settings"]) as url, workers(distributed, 1, 2):
        async with get_client(url=url, api_key=None) as client:
            reference = await asyncio.wait_for(_reference(client), 120)
            # a streamed run
            tid = (await client.threads.create())["thread_id"]
            stream = client.runs.stream(
                tid, "agent", input=USER, stream_mode=MODES, stream_resumable=True
            )
            head, tail, full = await asyncio.wait_for(_resume_run(client, stream, tid, 3), 120)
            _assert_resumed(head, tail, full)
            assert _shape(full) == reference
            # a background run created resumable: its worker keeps every event too
            tid2 = (await client.threads.create())["thread_id"]
            run = await client.runs.create(
                tid2, "agent", input=USER, stream_mode=MODES, stream_resumable=True
            )
            joined = client.runs.join_stream(tid2, run["run_id"], stream_mode=MODES)
            head2, tail2, full2 = await asyncio.wait_for(_resume_run(client, joined, tid2, 2), 120)
            _assert_resumed(head2, tail2, full2)
            assert _shape(full2) == reference
            await _bad_ids(url, tid, head[0].data["run_id"], "99999999999999-0")


class _CuttingProxy:
    """A loopback TCP proxy that cuts the first event stream after `events` events."""

    def __init__(self, upstream_port: int, events: int) -> None:
        self.upstream_port, self.events = upstream_port, events
        self.cut = False
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def upstream() -> None:
            while data := await reader.read(65536):
                self.requests.append(data)
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        forward = asyncio.create_task(upstream())
        seen, cutting = b"", False
        try:
            while data := await up_reader.read(65536):
                seen += data
                cutting = cutting or (not self.cut and b"text/event-stream" in seen)
                if cutting and seen.count(b"\n\n") >= self.events:
                    self.cut, cutting = True, False
                    writer.write(data[: len(data) - (len(seen) - _nth_end(seen, self.events))])
                    await writer.drain()
                    writer.transport.abort()  # the connection drops mid-stream
                    return
                writer.write(data)
                await writer.drain()
        finally:
            forward.cancel()
            up_writer.close()
            writer.close()


def _nth_end(data: bytes, n: int) -> int:
    """The offset just past the `n`-th blank line (`\\n\\n`) of `data`."""
    at = -2
    for _ in range(n):
        at = data.index(b"\n\n", at + 2)
    return at + 2


async def test_the_sdk_resumes_a_dropped_stream_by_itself(slow_server: str) -> None:
    proxy = _CuttingProxy(int(slow_server.rpartition(":")[2]), events=3)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with get_client(url=f"http://127.0.0.1:{port}", api_key=None) as client:
            tid = (await client.threads.create())["thread_id"]
            stream = client.runs.stream(
                tid, "agent", input=USER, stream_mode=MODES, stream_resumable=True
            )
            parts = await asyncio.wait_for(_collect(stream), 120)
            full = [
                p
                async for p in client.runs.join_stream(
                    tid, parts[0].data["run_id"], stream_mode=MODES
                )
            ]
    finally:
        server.close()
    assert proxy.cut, "the proxy dropped the first connection"
    resumed = [r for r in proxy.requests if r.startswith(b"GET ") and b"/stream" in r]
    assert resumed and b"last-event-id: 3" in resumed[0].lower()
    _assert_resumed(parts, [], full)


async def _collect(stream: AsyncIterator[StreamPart]) -> list[StreamPart]:
    return [p async for p in stream]
