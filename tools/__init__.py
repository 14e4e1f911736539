"""Keel's tools: the registry machinery and the built-in `sql_query` and `calculator`."""

from __future__ import annotations

from keel.tools.calculator import calculator
from keel.tools.registry import Tool, ToolContext, ToolRegistry, tool
from keel.tools.sql import sql_query

__all__ = [
    "Tool",
    "ToolContext",
    "ToolRegistry",
    "calculator",
    "default_tools",
    "sql_query",
    "tool",
]


def default_tools() -> ToolRegistry:
    """A new registry with the built-in tools (callers may register more without sharing)."""
    return ToolRegistry.of([sql_query, calculator])
