"""Keel: a production-grade AI agent runtime on LangGraph.

```python
import keel

result = keel.run("Which 3 products had the highest revenue last month?",
                  model="scripted:sales")
async with keel.open_agent(keel.load_settings()) as agent:
    result = await agent.arun("…")
```
Names load lazily, so `import keel.errors` stays light and free of import cycles.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keel.config import Settings, load_settings
    from keel.errors import KeelError
    from keel.runtime import Agent, open_agent, resume, run
    from keel.types import RunResult

__all__ = [
    "Agent",
    "KeelError",
    "RunResult",
    "Settings",
    "load_settings",
    "open_agent",
    "resume",
    "run",
]

_WHERE = {
    "Agent": "keel.runtime",
    "open_agent": "keel.runtime",
    "run": "keel.runtime",
    "resume": "keel.runtime",
    "Settings": "keel.config",
    "load_settings": "keel.config",
    "KeelError": "keel.errors",
    "RunResult": "keel.types",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'keel' has no attribute {name!r}")
