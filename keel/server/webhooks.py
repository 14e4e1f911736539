"""Run webhooks: one POST of the run's final payload to the URL given at run creation.

A URL is accepted at creation only if its host is in `KEEL_SERVICE__WEBHOOK_ALLOWED_HOSTS`
(http/https, no credentials): the server never posts to addresses a client chose freely
(SSRF). Names are matched, not addresses: an allowed name is trusted to resolve somewhere
harmless.

Delivery is at-least-once, from the process that finished the run, in the background (the
run's completion never waits for it): a 5xx, 429, timeout or connection error is retried
with exponential backoff, up to `webhook_attempts` POSTs. Every POST of a run carries the
same `Idempotency-Key` (the run id) so receivers can de-duplicate: a retry after a lost
answer, or a worker that dies after sending and whose run is finished again elsewhere, can
deliver twice. At shutdown pending deliveries get `webhook_drain_s` to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import structlog

from keel.config import ServiceSettings
from keel.observability.metrics import record_webhook, record_webhook_attempt
from keel.server.errors import Unprocessable
from keel.server.handles import run_json
from keel.server.store import RunRecord, now

__all__ = ["WebhookPolicy", "WebhookSender", "check_webhook", "webhook_payload"]

log = structlog.get_logger("keel.server.webhooks")

MAX_URL_CHARS = 2048
MAX_BACKOFF_S = 30.0
USER_AGENT = "keel-webhooks/1"


@dataclass(frozen=True)
class WebhookPolicy:
    """Where webhooks may go and how hard delivery tries."""

    allowed_hosts: tuple[str, ...] = ()
    """Host names (lower case); `*.example.com` allows the subdomains of `example.com`."""
    timeout_s: float = 10.0
    """Timeout of one POST."""
    attempts: int = 5
    """POSTs at most."""
    backoff_s: float = 1.0
    """Wait before the second attempt, doubled after each (capped at `MAX_BACKOFF_S`)."""
    drain_s: float = 10.0
    """How long `close()` waits for pending deliveries."""

    @classmethod
    def of(cls, settings: ServiceSettings) -> WebhookPolicy:
        return cls(
            allowed_hosts=settings.webhook_allowed_hosts,
            timeout_s=settings.webhook_timeout_s,
            attempts=settings.webhook_attempts,
            backoff_s=settings.webhook_backoff_s,
            drain_s=settings.webhook_drain_s,
        )

    def allows(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for allowed in self.allowed_hosts:
            if allowed.startswith("*."):
                if host.endswith(allowed[1:]) and host != allowed[2:]:
                    return True
            elif host == allowed:
                return True
        return False


def check_webhook(url: str | None, policy: WebhookPolicy) -> None:
    """Refuse (422) a webhook URL this server will not post to; `None` / empty passes."""
    if not url:
        return
    if not policy.allowed_hosts:
        raise Unprocessable(
            "webhooks are disabled on this server; an operator enables them by listing the "
            "receiving hosts in KEEL_SERVICE__WEBHOOK_ALLOWED_HOSTS (a JSON list)"
        )
    if len(url) > MAX_URL_CHARS:
        raise Unprocessable(f"webhook: the URL is longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        raise Unprocessable(f"webhook: not a valid URL ({exc})") from exc
    if parts.scheme not in ("http", "https"):
        raise Unprocessable("webhook: the URL's scheme must be http or https")
    if parts.username is not None or parts.password is not None:
        raise Unprocessable("webhook: the URL must not carry credentials (user:password@)")
    if not host:
        raise Unprocessable("webhook: the URL names no host")
    if not policy.allows(host):
        raise Unprocessable(
            f"webhook: host {host!r} is not allowed; allowed hosts are set by "
            "KEEL_SERVICE__WEBHOOK_ALLOWED_HOSTS"
        )


def _retryable(status: int) -> bool:
    return status >= 500 or status in (408, 429)


class WebhookSender:
    """Delivers webhooks in background tasks; `close()` drains them with a bound."""

    def __init__(self, policy: WebhookPolicy, *, client: httpx.AsyncClient | None = None) -> None:
        self.policy = policy
        self._client = client
        self._pending: set[asyncio.Task[bool]] = set()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.policy.timeout_s),
                follow_redirects=False,  # a redirect could lead anywhere: not followed
                trust_env=False,  # no proxies from the environment
                headers={"User-Agent": USER_AGENT},
            )
        return self._client

    def send(self, url: str, payload: dict[str, Any], *, run_id: str) -> None:
        """Deliver `payload` to `url` in the background."""
        task = asyncio.create_task(
            self.deliver(url, payload, run_id=run_id), name=f"keel-webhook-{run_id}"
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def deliver(self, url: str, payload: dict[str, Any], *, run_id: str) -> bool:
        """POST until a 2xx, a non-retryable answer, or the attempts are used up."""
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": run_id,
            "X-Keel-Run-Id": run_id,
        }
        bound = log.bind(run_id=run_id, thread_id=payload.get("thread_id"))
        delay = self.policy.backoff_s
        problem = ""
        for attempt in range(1, self.policy.attempts + 1):
            body = orjson.dumps({**payload, "webhook_sent_at": datetime.now(UTC).isoformat()})
            try:
                response = await self._http().post(url, content=body, headers=headers)
            except httpx.TimeoutException as exc:
                record_webhook_attempt("timeout")
                problem = f"timeout ({type(exc).__name__})"
            except httpx.TransportError as exc:
                record_webhook_attempt("connect_error")
                problem = f"{type(exc).__name__}: {str(exc)[:200]}"
            else:
                record_webhook_attempt(f"{response.status_code // 100}xx")
                if response.is_success:
                    record_webhook("delivered")
                    bound.info("webhook.delivered", attempts=attempt)
                    return True
                if not _retryable(response.status_code):
                    record_webhook("rejected")
                    bound.warning("webhook.rejected", status=response.status_code, attempts=attempt)
                    return False
                problem = f"HTTP {response.status_code}"
            if attempt < self.policy.attempts:
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
        record_webhook("failed")
        bound.error("webhook.failed", attempts=self.policy.attempts, error=problem)
        return False

    async def close(self) -> None:
        """Wait up to `drain_s` for pending deliveries, drop the rest, close the client."""
        pending = list(self._pending)
        if pending:
            _, late = await asyncio.wait(pending, timeout=self.policy.drain_s)
            for task in late:
                task.cancel()
                record_webhook("abandoned")
                log.error("webhook.abandoned", run_id=task.get_name().removeprefix("keel-webhook-"))
                await asyncio.gather(*late, return_exceptions=True)
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
            self._client = None


def webhook_payload(
    record: RunRecord, status: str, *, values: dict[str, Any] | None, error: str | None
) -> dict[str, Any]:
    """The run as `GET /threads/{id}/runs/{run_id}` shows it once ended, plus the thread's
    final `values` and, for `error` / cancelled runs, the `error` message (LangGraph's
    shape; `webhook_sent_at` is added on each POST)."""
    payload = run_json(record)
    payload.update(status=status, updated_at=now().isoformat(), values=values)
    if error:
        payload["error"] = error
    return payload
