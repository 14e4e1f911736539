"""The public surface: what `keel` and `keel.testing` export, pinned (httpx's shape).

A name added to or dropped from `__all__` must be a decision, so the lists are spelled out.
Every exported name resolves, lives in a public module it can also be imported from, and
`import keel` stays light (its names load on first use).
"""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from importlib import import_module
from pathlib import Path
from types import ModuleType

import pytest

import keel
import keel.testing

KEEL = [
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

KEEL_TESTING = [
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

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("module", "expected"), [(keel, KEEL), (keel.testing, KEEL_TESTING)])
def test_all_is_exactly_the_public_surface(module: ModuleType, expected: list[str]) -> None:
    assert module.__all__ == expected
    assert set(expected) <= set(dir(module))


@pytest.mark.parametrize(
    ("module", "name"),
    [(keel, n) for n in KEEL] + [(keel.testing, n) for n in KEEL_TESTING],
)
def test_every_exported_name_resolves_to_a_public_home(module: ModuleType, name: str) -> None:
    value = getattr(module, name)
    if not (inspect.isclass(value) or inspect.isfunction(value)):
        return  # constants, type aliases and tool instances have no home of their own
    home = value.__module__
    assert not any(part.startswith("_") for part in home.split(".")), f"{name} is in {home}"
    assert getattr(import_module(home), value.__qualname__) is value


def test_the_error_taxonomy_is_exported_whole() -> None:
    errors = import_module("keel.errors")
    classes = {n for n in errors.__all__ if inspect.isclass(getattr(errors, n))}
    assert classes <= set(keel.__all__)


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'open_agnet'"):
        _ = keel.open_agnet  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="no attribute 'ChaosSever'"):
        _ = keel.testing.ChaosSever  # type: ignore[attr-defined]


def test_import_keel_loads_no_dependency() -> None:
    """`import keel` (and `keel.testing`) load nothing heavy until a name is used."""
    code = (
        "import json, sys; before = set(sys.modules); import keel, keel.testing; "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(done.stdout)
    assert [m for m in loaded if m.split(".")[0] == "keel"] == ["keel", "keel.testing"]
    heavy = ("langgraph", "langchain_core", "pydantic", "aiohttp", "sqlalchemy")
    assert not [m for m in loaded if m.split(".")[0] in heavy]


_IMPORT = re.compile(r"^\s*(?:from|import)\s+(keel(?:\.\w+)*)", re.MULTILINE)


def test_notebooks_import_no_private_module() -> None:
    """What `lint-imports` checks for .py files (private modules stay inside their package),
    for the notebooks' code cells, which it cannot read."""
    offending = []
    for notebook in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        for module in _IMPORT.findall(code):
            if any(p.startswith("_") and not p.endswith("__") for p in module.split(".")):
                offending.append(f"{notebook.name}: {module}")
    assert offending == []
