"""Keel's exceptions: one root, three families, each error carrying an `ErrorCode`.

```
KeelError
├── UsageError                a developer mistake: fix the code or the configuration
│   ├── ConfigError           invalid settings (names the field)
│   ├── ModelSpecError        an unknown or malformed model spec
│   ├── ToolDefinitionError   a tool that cannot be registered as written
│   └── NetworkBlockedError   a test tried to reach a non-loopback address
├── RunError                  a run (or a part of one) failed at run time
│   ├── ModelCallError        a chat-model call failed (carries its ErrorKind)
│   ├── CircuitOpenError      a breaker is open: degrade at once, without calling
│   ├── RateLimitedError      a configured rate or concurrency limit cannot be met in time
│   ├── MalformedOutputError  the model's reply follows neither protocol: repair it
│   ├── ToolError             a tool failed
│   │   ├── ToolInputError    the model's fault: fed back to it as an observation
│   │   ├── ToolTransientError try again later (always retryable)
│   │   └── ToolFatalError    nothing the model can do: the run degrades
│   ├── ThreadNotFoundError   resume/trace of a thread with no checkpoint
│   └── LocalModelError       the embedded local model cannot be assembled or started
└── ControlSignal             not a failure: steers the run (never caught by retries)
    └── StorageUnavailableError the checkpoint database is unreachable: abandon the step,
                              retry it from the last checkpoint
```

LangGraph's own control-flow exceptions (`GraphBubbleUp`, `GraphInterrupt`) are not Keel
errors and must never be swallowed: `is_control_flow` tells them apart.
"""

from __future__ import annotations

from enum import StrEnum

from langgraph.errors import GraphBubbleUp

__all__ = [
    "CircuitOpenError",
    "ConfigError",
    "ControlSignal",
    "ErrorCode",
    "KeelError",
    "LocalModelError",
    "MalformedOutputError",
    "ModelCallError",
    "ModelSpecError",
    "NetworkBlockedError",
    "RateLimitedError",
    "RunError",
    "StorageUnavailableError",
    "ThreadNotFoundError",
    "ToolDefinitionError",
    "ToolError",
    "ToolFatalError",
    "ToolInputError",
    "ToolTransientError",
    "UsageError",
    "is_control_flow",
]


class ErrorCode(StrEnum):
    """Stable, machine-readable reasons; they appear in results, logs and checkpoints."""

    USAGE_INVALID = "usage_invalid"
    CONFIG_INVALID = "config_invalid"
    MODEL_SPEC_INVALID = "model_spec_invalid"
    TOOL_DEFINITION_INVALID = "tool_definition_invalid"
    NETWORK_BLOCKED = "network_blocked"
    MODEL_ERROR = "model_error"
    MODEL_TIMEOUT = "model_timeout"
    MALFORMED_OUTPUT = "malformed_output"
    UNGROUNDED_ANSWER = "ungrounded_answer"
    ITERATION_LIMIT = "iteration_limit"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    BUDGET_EXCEEDED = "budget_exceeded"
    UNKNOWN_TOOL = "unknown_tool"
    INVALID_TOOL_ARGS = "invalid_tool_args"
    TOOL_REFUSED = "tool_refused"
    TOOL_TIMEOUT = "tool_timeout"
    TOOL_FAILED = "tool_failed"
    TOOL_ERROR = "tool_error"
    THREAD_NOT_FOUND = "thread_not_found"
    LOCAL_MODEL_UNAVAILABLE = "local_model_unavailable"
    WEIGHTS_MISMATCH = "weights_mismatch"
    MODEL_RATE_LIMITED = "model_rate_limited"
    MODEL_UNAVAILABLE = "model_unavailable"
    MODEL_REJECTED = "model_rejected"
    CONTEXT_TOO_LONG = "context_too_long"
    OUTPUT_TRUNCATED = "output_truncated"
    BREAKER_OPEN = "breaker_open"
    RATE_LIMITED = "rate_limited"
    CANCELLED = "cancelled"
    TOOL_REJECTED = "tool_rejected"
    OUTCOME_UNKNOWN = "outcome_unknown"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    NO_PENDING_REVIEW = "no_pending_review"
    REVIEW_INVALID = "review_invalid"


class KeelError(Exception):
    """Root of every error Keel raises on purpose."""

    code: ErrorCode = ErrorCode.MODEL_ERROR

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class UsageError(KeelError):
    """A developer mistake: wrong configuration, wrong spec, wrong tool definition."""

    code = ErrorCode.USAGE_INVALID


class ConfigError(UsageError):
    code = ErrorCode.CONFIG_INVALID


class ModelSpecError(UsageError):
    code = ErrorCode.MODEL_SPEC_INVALID


class ToolDefinitionError(UsageError):
    code = ErrorCode.TOOL_DEFINITION_INVALID


class NetworkBlockedError(UsageError):
    code = ErrorCode.NETWORK_BLOCKED


class RunError(KeelError):
    """Something failed while a run was executing."""


class ModelCallError(RunError):
    """A chat-model call failed; `kind` says whether a retry can help."""

    def __init__(
        self, message: str, *, kind: str = "retryable", code: ErrorCode | None = None
    ) -> None:
        super().__init__(message, code=code or ErrorCode.MODEL_ERROR)
        self.kind = kind


class MalformedOutputError(RunError):
    """The model's reply could not be parsed; the message says what was wrong."""

    code = ErrorCode.MALFORMED_OUTPUT


class ToolError(RunError):
    code = ErrorCode.TOOL_FAILED


class ToolInputError(ToolError):
    """The call was wrong (refused query, bad expression): the model can fix it."""

    code = ErrorCode.TOOL_REFUSED


class ToolFatalError(ToolError):
    """The tool cannot work at all (its backend is gone): retrying the model is pointless."""


class ToolTransientError(ToolError):
    """A tool's backend is briefly unavailable: the same call may work a moment later."""


class CircuitOpenError(RunError):
    """The breaker for a model or tool is open: the call was not made."""

    code = ErrorCode.BREAKER_OPEN


class RateLimitedError(RunError):
    """A configured rate or concurrency limit could not be met before the deadline."""

    code = ErrorCode.RATE_LIMITED


class ThreadNotFoundError(RunError):
    code = ErrorCode.THREAD_NOT_FOUND


class LocalModelError(RunError):
    code = ErrorCode.LOCAL_MODEL_UNAVAILABLE


class ControlSignal(KeelError):
    """Base for exceptions that steer a run rather than report a failure."""


class StorageUnavailableError(ControlSignal):
    """The checkpoint database (or its journal) failed mid-step; the step is retried from
    the last checkpoint rather than reported as a tool or model failure."""

    code = ErrorCode.STORAGE_UNAVAILABLE


def is_control_flow(exc: BaseException) -> bool:
    """True for exceptions that must propagate untouched (LangGraph's and Keel's signals)."""
    return isinstance(exc, GraphBubbleUp | ControlSignal)
