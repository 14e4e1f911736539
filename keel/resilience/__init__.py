"""Failure classification and retry timing."""

from keel.resilience.backoff import backoff_delay
from keel.resilience.classify import Classified, classify_model_error, classify_tool_error

__all__ = ["Classified", "backoff_delay", "classify_model_error", "classify_tool_error"]
