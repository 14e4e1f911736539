"""One place that decides what a failure means: retry, degrade, or stop.

- retryable: rate limits (429), 5xx, timeouts, dropped connections — the same call may work.
- degradable: the call cannot work as made (auth, permission, unknown model, bad request,
  context too long) — another model or a simpler path may.
- fatal: a developer mistake (a bug in a tool, a wrong type) — stop cleanly and say so.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass

from keel.errors import ErrorCode, KeelError, ModelCallError, ToolFatalError, UsageError
from keel.types import ErrorKind

__all__ = ["Classified", "classify_model_error", "classify_tool_error"]


@dataclass(frozen=True)
class Classified:
    kind: ErrorKind
    code: ErrorCode


def _openai_kind(exc: BaseException) -> ErrorKind | None:
    openai = sys.modules.get("openai")
    if openai is None:  # not loaded, so this cannot be one of its errors
        return None
    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError | openai.RateLimitError):
        return "retryable"
    if isinstance(exc, openai.InternalServerError):
        return "retryable"
    if isinstance(exc, openai.APIStatusError):
        return "retryable" if exc.status_code >= 500 or exc.status_code == 429 else "degradable"
    return None


def classify_model_error(exc: BaseException) -> Classified:
    """Classify an exception raised by a chat-model call."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return Classified("retryable", ErrorCode.MODEL_TIMEOUT)
    if isinstance(exc, ModelCallError):
        return Classified(exc.kind, exc.code)  # type: ignore[arg-type]
    if isinstance(exc, UsageError):
        return Classified("fatal", exc.code)
    if isinstance(exc, KeelError):
        return Classified("degradable", exc.code)
    kind = _openai_kind(exc)
    if kind is not None:
        return Classified(kind, ErrorCode.MODEL_ERROR)
    if isinstance(exc, ConnectionError | OSError):
        return Classified("retryable", ErrorCode.MODEL_ERROR)
    if isinstance(exc, TypeError | AttributeError | NotImplementedError):
        return Classified("fatal", ErrorCode.MODEL_ERROR)
    return Classified("retryable", ErrorCode.MODEL_ERROR)


def classify_tool_error(
    exc: BaseException, transient: tuple[type[BaseException], ...]
) -> Classified:
    """Classify an exception a tool raised (its `ToolInputError`s never get here)."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return Classified("retryable", ErrorCode.TOOL_TIMEOUT)
    if transient and isinstance(exc, transient):
        return Classified("retryable", ErrorCode.TOOL_FAILED)
    if isinstance(exc, ToolFatalError):
        return Classified("degradable", exc.code)
    return Classified("fatal", ErrorCode.TOOL_FAILED)
