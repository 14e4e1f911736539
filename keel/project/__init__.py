"""Your project: the graphs a `langgraph.json` names, loaded and checked once at start-up.

```python
from keel.project import load_project

project = load_project()                  # ./langgraph.json, or the built-in data assistant
entry = project.get("support")            # a GraphEntry: kind "keel", "graph" or "factory"
```
The file is the LangGraph CLI's own format (`graphs`, `env`, `dependencies`); `keel agents`,
`keel run --agent`, `keel serve` and `keel worker` read it. docs/projects.md describes it.
"""

from keel.project.entries import GraphEntry, GraphKind, open_factory_graph
from keel.project.loader import BUILTIN_ID, CONFIG_FILE, load_project
from keel.project.model import Project

__all__ = [
    "BUILTIN_ID",
    "CONFIG_FILE",
    "GraphEntry",
    "GraphKind",
    "Project",
    "load_project",
    "open_factory_graph",
]
