"""Keel: a production-grade AI agent runtime on LangGraph.

```python
import keel

result = keel.run("Which 3 products had the highest revenue last month?",
                  model="scripted:sales")
support = keel.Agent(name="support", instructions="…", tools=[my_tool])
async with keel.open_agent(support) as agent:      # a keel.AgentRuntime
    result = await agent.arun("…")
```
Everything a user writes imports from here (and `keel.testing` for scripted models and the
chaos server): the agent and its entry points, settings, the tool API, the error taxonomy,
checkpoint storage and retention, and the graph for those who compile their own.
Names load lazily, so `import keel` stays light and free of import cycles.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keel.agents import Agent, Budget, Limits
    from keel.checkpoints import open_saver
    from keel.checkpoints.retention import RetentionPolicy
    from keel.config import Settings, load_settings
    from keel.errors import (
        CircuitOpenError,
        ConfigError,
        ControlSignal,
        ErrorCode,
        KeelError,
        LocalModelError,
        MalformedOutputError,
        ModelCallError,
        ModelSpecError,
        NetworkBlockedError,
        RateLimitedError,
        RunError,
        StorageUnavailableError,
        ThreadNotFoundError,
        ToolDefinitionError,
        ToolError,
        ToolFatalError,
        ToolInputError,
        ToolTransientError,
        UsageError,
    )
    from keel.graphs import build_agent_graph
    from keel.runtime import AgentRuntime, open_agent, resume, run
    from keel.tools import (
        Tool,
        ToolContext,
        ToolRegistry,
        calculator,
        default_tools,
        sql_query,
        tool,
    )
    from keel.tools.registry import Reconciled
    from keel.types import AgentState, RunMetadata, RunResult

_WHERE = {
    # your agent: its definition, and the runtime that runs it
    "Agent": "keel.agents",
    "Limits": "keel.agents",
    "Budget": "keel.agents",
    "AgentRuntime": "keel.runtime",
    "open_agent": "keel.runtime",
    "run": "keel.runtime",
    "resume": "keel.runtime",
    "RunResult": "keel.types",
    "RunMetadata": "keel.types",
    "Settings": "keel.config",
    "load_settings": "keel.config",
    # your own tools
    "tool": "keel.tools",
    "Tool": "keel.tools",
    "ToolContext": "keel.tools",
    "ToolRegistry": "keel.tools",
    "Reconciled": "keel.tools.registry",
    "default_tools": "keel.tools",
    "sql_query": "keel.tools",
    "calculator": "keel.tools",
    # storage and retention
    "open_saver": "keel.checkpoints",
    "RetentionPolicy": "keel.checkpoints.retention",
    # the graph, for those who compile their own
    "build_agent_graph": "keel.graphs",
    "AgentState": "keel.types",
    # errors: one root, three families, one code each
    "ErrorCode": "keel.errors",
    "KeelError": "keel.errors",
    "UsageError": "keel.errors",
    "ConfigError": "keel.errors",
    "ModelSpecError": "keel.errors",
    "ToolDefinitionError": "keel.errors",
    "NetworkBlockedError": "keel.errors",
    "RunError": "keel.errors",
    "ModelCallError": "keel.errors",
    "CircuitOpenError": "keel.errors",
    "RateLimitedError": "keel.errors",
    "MalformedOutputError": "keel.errors",
    "ToolError": "keel.errors",
    "ToolInputError": "keel.errors",
    "ToolTransientError": "keel.errors",
    "ToolFatalError": "keel.errors",
    "ThreadNotFoundError": "keel.errors",
    "LocalModelError": "keel.errors",
    "ControlSignal": "keel.errors",
    "StorageUnavailableError": "keel.errors",
}

__all__ = [
    "Agent",
    "AgentRuntime",
    "AgentState",
    "Budget",
    "CircuitOpenError",
    "ConfigError",
    "ControlSignal",
    "ErrorCode",
    "KeelError",
    "Limits",
    "LocalModelError",
    "MalformedOutputError",
    "ModelCallError",
    "ModelSpecError",
    "NetworkBlockedError",
    "RateLimitedError",
    "Reconciled",
    "RetentionPolicy",
    "RunError",
    "RunMetadata",
    "RunResult",
    "Settings",
    "StorageUnavailableError",
    "ThreadNotFoundError",
    "Tool",
    "ToolContext",
    "ToolDefinitionError",
    "ToolError",
    "ToolFatalError",
    "ToolInputError",
    "ToolRegistry",
    "ToolTransientError",
    "UsageError",
    "build_agent_graph",
    "calculator",
    "default_tools",
    "load_settings",
    "open_agent",
    "open_saver",
    "resume",
    "run",
    "sql_query",
    "tool",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'keel' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
