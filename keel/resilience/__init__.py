"""Failure classification, retry timing, breakers, rate limits, timeouts."""

from keel.resilience.backoff import backoff_delay, retry_delay
from keel.resilience.breaker import Breakers, MemoryBreakerStore, RedisBreakerStore
from keel.resilience.classify import (
    Classified,
    classify_model_error,
    classify_tool_error,
    retry_after,
    retry_on,
)
from keel.resilience.guard import Resilience
from keel.resilience.ratelimit import RateLimits

__all__ = [
    "Breakers",
    "Classified",
    "MemoryBreakerStore",
    "RateLimits",
    "RedisBreakerStore",
    "Resilience",
    "backoff_delay",
    "classify_model_error",
    "classify_tool_error",
    "retry_after",
    "retry_delay",
    "retry_on",
]
