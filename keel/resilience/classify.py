"""One classifier, `retry_on`, that decides what any failure means: retry, degrade, or stop.

- retryable: rate limits (429, honouring `Retry-After`), 5xx, 408/409, timeouts, dropped or
  reset connections, and whatever a tool declares transient — the same call may work.
  Any other exception a tool raises (`ValueError("city not found")`, a 404 from its API) is
  `tool_error`: an observation the model reads and may answer with another tool or way.
- degradable: the call cannot work as made (auth, permission, unknown model, bad request,
  context too long, an open breaker, an unmet rate limit, an exhausted budget) — another
  model or a simpler path may.
- fatal: a developer mistake (`TypeError`, `AttributeError`, `NameError`, … in a tool) or
  a cancelled run — stop cleanly and say so.

Provider errors are recognised by duck typing on `status_code` / `response`, so the classifier
works for the OpenAI SDK, httpx and any client shaped like them without importing them.
"""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keel.errors import (
    CircuitOpenError,
    ErrorCode,
    KeelError,
    ModelCallError,
    RateLimitedError,
    ToolFatalError,
    ToolTransientError,
    UsageError,
)
from keel.types import ErrorKind

__all__ = ["Classified", "classify_model_error", "classify_tool_error", "retry_after", "retry_on"]

_CONNECTION_NAMES = ("APIConnectionError", "ConnectError", "RemoteProtocolError", "ReadError")
_TIMEOUT_NAMES = ("APITimeoutError", "ReadTimeout", "ConnectTimeout", "TimeoutException")
DEVELOPER_MISTAKES: tuple[type[BaseException], ...] = (
    TypeError,
    AttributeError,
    NameError,
    ImportError,
    SyntaxError,
    NotImplementedError,
    AssertionError,
)
"""Exceptions that mean the code is wrong, not the call: fatal wherever they come from."""


@dataclass(frozen=True)
class Classified:
    """The verdict on one failure."""

    kind: ErrorKind
    """retryable / degradable / fatal: picks the edge the graph takes."""
    code: ErrorCode
    """The stable reason recorded in the state, the trace and the result."""
    retry_after: float | None = None
    """Seconds the callee asked us to wait (`Retry-After`), when it said."""


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _headers(exc: BaseException) -> Mapping[str, str] | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    return headers if isinstance(headers, Mapping) or hasattr(headers, "get") else None


def retry_after(headers: Mapping[str, str] | Any) -> float | None:
    """Seconds to wait from `retry-after-ms` / `Retry-After` (seconds or an HTTP date).

    An HTTP date is measured against the response's own `Date` header, so no clock is read.
    """
    if headers is None:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
        sent = email.utils.parsedate_to_datetime(headers.get("date") or "")
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - sent).total_seconds())


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def _provider_verdict(exc: BaseException) -> Classified | None:
    status = _status(exc)
    if status is not None:
        wait = retry_after(_headers(exc))
        if status == 429:
            return Classified("retryable", ErrorCode.MODEL_RATE_LIMITED, wait)
        if status >= 500 or status in (408, 409):
            return Classified("retryable", ErrorCode.MODEL_UNAVAILABLE, wait)
        body = f"{getattr(exc, 'code', '')} {exc}".lower()
        if "context_length" in body or "context length" in body or "too many tokens" in body:
            return Classified("degradable", ErrorCode.CONTEXT_TOO_LONG)
        return Classified("degradable", ErrorCode.MODEL_REJECTED)
    names = _names(exc)
    if names & set(_TIMEOUT_NAMES):
        return Classified("retryable", ErrorCode.MODEL_TIMEOUT)
    if names & set(_CONNECTION_NAMES):
        return Classified("retryable", ErrorCode.MODEL_UNAVAILABLE)
    return None


def retry_on(
    exc: BaseException, *, transient: tuple[type[BaseException], ...] = (), tool: bool = False
) -> Classified:
    """Classify a failure of a model call (`tool=False`) or a tool call (`tool=True`).

    `transient` are the exception types the tool declared retryable.
    """
    timeout_code = ErrorCode.TOOL_TIMEOUT if tool else ErrorCode.MODEL_TIMEOUT
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
        return Classified("fatal", ErrorCode.CANCELLED)
    if isinstance(exc, TimeoutError):
        return Classified("retryable", timeout_code)
    if transient and isinstance(exc, transient):
        return Classified("retryable", ErrorCode.TOOL_FAILED if tool else ErrorCode.MODEL_ERROR)
    if isinstance(exc, ToolTransientError):
        return Classified("retryable", exc.code)
    if isinstance(exc, CircuitOpenError | RateLimitedError | ToolFatalError):
        return Classified("degradable", exc.code)
    if isinstance(exc, ModelCallError):
        return Classified(exc.kind, exc.code)  # type: ignore[arg-type]
    if isinstance(exc, UsageError):
        return Classified("fatal", exc.code)
    if isinstance(exc, KeelError):
        return Classified("degradable", exc.code)
    if tool:
        return _tool_verdict(exc)
    verdict = _provider_verdict(exc)
    if verdict is not None:
        return verdict
    if isinstance(exc, ConnectionError | OSError):
        return Classified("retryable", ErrorCode.MODEL_UNAVAILABLE)
    if isinstance(exc, TypeError | AttributeError | NotImplementedError | AssertionError):
        return Classified("fatal", ErrorCode.MODEL_ERROR)
    return Classified("retryable", ErrorCode.MODEL_ERROR)


def _tool_verdict(exc: BaseException) -> Classified:
    """An exception a tool did not declare: a bug stops the run, a dropped connection (or a
    5xx / 429 from the tool's API) is retried like a declared transient error, and anything
    else is the tool's answer: the model sees the error and may take another way."""
    if isinstance(exc, DEVELOPER_MISTAKES):
        return Classified("fatal", ErrorCode.TOOL_FAILED)
    verdict = _provider_verdict(exc)
    if verdict is not None and verdict.kind == "retryable":
        code = ErrorCode.TOOL_TIMEOUT if verdict.code == ErrorCode.MODEL_TIMEOUT else None
        return Classified("retryable", code or ErrorCode.TOOL_FAILED, verdict.retry_after)
    if verdict is None and isinstance(exc, ConnectionError):
        return Classified("retryable", ErrorCode.TOOL_FAILED)
    return Classified("retryable", ErrorCode.TOOL_ERROR)


def classify_model_error(exc: BaseException) -> Classified:
    """`retry_on` for a chat-model call."""
    return retry_on(exc)


def classify_tool_error(
    exc: BaseException, transient: tuple[type[BaseException], ...]
) -> Classified:
    """`retry_on` for a tool call (its `ToolInputError`s never get here)."""
    return retry_on(exc, transient=transient, tool=True)
