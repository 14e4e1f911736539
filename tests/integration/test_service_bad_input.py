"""Malformed requests get a 4xx with a JSON error that says what was wrong, never a 5xx.

Hand-written cases pin the common mistakes; schemathesis then fuzzes every operation of
the OpenAPI schema (a bounded number of examples each) against a running server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from tests.integration.service_server import running_server


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from keel.config import load_settings

    tmp: Path = tmp_path_factory.mktemp("bad-input")
    settings = load_settings(
        home=tmp / "home",
        model="scripted:echo",
        checkpoint_url=f"sqlite:///{tmp / 'cp.sqlite'}",
        retry={"initial_s": 0.0, "max_s": 0.0},
        service={"max_body_bytes": 4096},
    )
    with running_server(settings) as url:
        yield url


@pytest.fixture
def http(server_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server_url, timeout=10) as client:
        yield client


EXAMPLES = 12
"""Generated requests per operation and mode (bounded: the suite must stay fast)."""


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["error"], str) and isinstance(body["message"], str)
    return str(body["message"])


CASES: list[tuple[str, str, dict[str, Any], int, str]] = [
    (
        "POST",
        "/threads",
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
        400,
        "not valid JSON",
    ),
    ("POST", "/threads", {"json": {"thread_id": 5}}, 422, "thread_id"),
    ("POST", "/threads", {"json": {"thread_id": "a b/c"}}, 422, "thread_id"),
    ("POST", "/threads", {"json": {"metadata": "x"}}, 422, "metadata"),
    ("POST", "/threads", {"json": {"if_exists": "maybe"}}, 422, "if_exists"),
    ("POST", "/threads", {"json": [1, 2]}, 422, "body"),
    ("GET", "/threads/nope", {}, 404, "thread nope not found"),
    ("GET", "/threads/nope/state", {}, 404, "not found"),
    ("POST", "/threads/nope/history", {"json": {"limit": -1}}, 422, "limit"),
    ("POST", "/threads/nope/runs", {"json": {"assistant_id": "agent"}}, 404, "not found"),
    ("POST", "/runs/wait", {"json": {}}, 422, "assistant_id"),
    ("POST", "/runs/wait", {"json": {"assistant_id": "other", "input": {}}}, 404, "assistant"),
    ("POST", "/runs/wait", {"json": {"assistant_id": "agent", "input": {}}}, 422, "messages"),
    (
        "POST",
        "/runs/wait",
        {"json": {"assistant_id": "agent", "input": {"question": "q"}, "command": {"resume": 1}}},
        422,
        "either 'input' or 'command'",
    ),
    (
        "POST",
        "/runs/stream",
        {"json": {"assistant_id": "agent", "input": {"question": "q"}, "stream_mode": "x"}},
        422,
        "stream_mode",
    ),
    (
        "POST",
        "/runs",
        {"json": {"assistant_id": "agent", "input": {"question": "q"}, "webhook": "http://x"}},
        422,
        "KEEL_SERVICE__WEBHOOK_ALLOWED_HOSTS",
    ),
    (
        "POST",
        "/threads/search",
        {"json": {"values": {"question": "q"}}},
        422,
        "state values",
    ),
    (
        "POST",
        "/threads",
        {"content": b"thread_id=x", "headers": {"content-type": "text/plain"}},
        415,
        "application/json",
    ),
    (
        "POST",
        "/threads",
        {"content": b"{}" + b" " * 5000, "headers": {"content-type": "application/json"}},
        413,
        "limited",
    ),
    ("DELETE", "/threads", {}, 405, ""),
    ("GET", "/no/such/route", {}, 404, ""),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "says"), CASES)
def test_malformed_requests_get_clear_4xx(
    http: httpx.Client, method: str, path: str, kwargs: dict[str, Any], status: int, says: str
) -> None:
    message = _error(http.request(method, path, **kwargs), status)
    assert says in message


def test_chunked_oversized_body_is_refused(http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"metadata": {"x": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}}'

    response = http.post("/threads", content=chunks(), headers={"content-type": "application/json"})
    _error(response, 413)


def test_a_refused_request_loses_nothing(http: httpx.Client) -> None:
    created = http.post("/threads", json={"thread_id": "keep-me", "metadata": {"a": 1}})
    assert created.status_code == 200
    bad = http.patch("/threads/keep-me", json={"metadata": "not a dict"})
    _error(bad, 422)
    assert http.get("/threads/keep-me").json()["metadata"] == {"a": 1, "graph_id": "agent"}


def _operations(server_url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{server_url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzed_requests_never_get_a_server_error(server_url: str, mode: GenerationMode) -> None:
    """Every operation of the OpenAPI schema, with generated valid and invalid requests."""
    operations = _operations(server_url)
    assert len(operations) >= 20
    fuzzed = 0
    for operation in operations:

        @hyp_settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        @given(case=operation.as_strategy(mode))
        def check(case: Any) -> None:
            response = case.call(base_url=server_url, timeout=30)
            where = f"{case.method} {case.formatted_path}"
            assert response.status_code < 500, f"{where}: {response.text}"
            # every status and content type answered is one the schema declares
            case.validate_response(
                response, checks=[status_code_conformance, content_type_conformance]
            )
            if response.status_code >= 400:
                body = response.json()
                assert isinstance(body.get("message"), str) and body.get("error"), (where, body)

        try:
            check()
        except Unsatisfiable:  # nothing can be invalid about an operation with no inputs
            assert mode == GenerationMode.NEGATIVE
            continue
        fuzzed += 1
    assert fuzzed >= 15
