"""Keel's test kit: deterministic chat models and a chat-completions server that misbehaves.

```python
from keel.testing import FunctionModel, ChaosServer, FaultPlan

model = FunctionModel(lambda messages, info: "42")      # the reply as a function
with ChaosServer(policy, faults=FaultPlan(rate=0.3, seed=7)) as server:
    ...                                                 # openai_base_url=server.base_url
```
Names load lazily: the scripted models need only langchain-core, and the chaos server's
aiohttp (a dev dependency) is imported only when a chaos name is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keel.testing.chaos import (
        FAULT_KINDS,
        ChaosServer,
        ChaosStats,
        FaultKind,
        FaultPlan,
        Policy,
        chaos_tool,
    )
    from keel.testing.policies import scripted_model
    from keel.testing.scripted import CallInfo, FunctionModel, Reply, ScriptedModel

_WHERE = {
    # scripted models
    "FunctionModel": "keel.testing.scripted",
    "ScriptedModel": "keel.testing.scripted",
    "CallInfo": "keel.testing.scripted",
    "Reply": "keel.testing.scripted",
    "scripted_model": "keel.testing.policies",
    # the chaos server and chaos tools
    "ChaosServer": "keel.testing.chaos",
    "ChaosStats": "keel.testing.chaos",
    "FaultPlan": "keel.testing.chaos",
    "FaultKind": "keel.testing.chaos",
    "FAULT_KINDS": "keel.testing.chaos",
    "Policy": "keel.testing.chaos",
    "chaos_tool": "keel.testing.chaos",
}

__all__ = [
    "FAULT_KINDS",
    "CallInfo",
    "ChaosServer",
    "ChaosStats",
    "FaultKind",
    "FaultPlan",
    "FunctionModel",
    "Policy",
    "Reply",
    "ScriptedModel",
    "chaos_tool",
    "scripted_model",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'keel.testing' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
