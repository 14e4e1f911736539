"""Read and check a `langgraph.json` (the LangGraph CLI's format) before anything is imported.

Only the file's shape is checked here: every mistake is a `ConfigError` naming the file, the
key and the fix. Importing the graphs it names is `keel.project.importer`'s job.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keel.errors import ConfigError

__all__ = ["HONOURED_KEYS", "ConfigFile", "GraphSpec", "read_config_file"]

HONOURED_KEYS = ("graphs", "env", "dependencies")
"""Top-level keys Keel acts on; the LangGraph CLI's others (python_version, dockerfile_lines,
pip_config_file, store, checkpointer, auth, http, webhooks, ui, …) are accepted and ignored."""

EXAMPLE = '"graphs": {"my_agent": "./agent.py:agent"}'


@dataclass(frozen=True)
class GraphSpec:
    """One `graphs` entry: where the object lives, and the description the file gives it."""

    graph_id: str
    source: str
    """As written: `./path/file.py:attr` (a file, relative to the config's folder) or
    `package.module:attr` (imported by name)."""
    description: str = ""

    @property
    def target(self) -> str:
        return self.source.rsplit(":", 1)[0]

    @property
    def attr(self) -> str:
        return self.source.rsplit(":", 1)[1]

    @property
    def is_file(self) -> bool:
        """A file path when it has a `/` or ends in `.py` (the LangGraph CLI's rule: module
        names use dots)."""
        return "/" in self.target or "\\" in self.target or self.target.endswith(".py")


@dataclass(frozen=True)
class ConfigFile:
    """A checked `langgraph.json`."""

    path: Path
    graphs: tuple[GraphSpec, ...]
    env: str | Mapping[str, str] | None
    dependencies: tuple[str, ...]
    ignored: tuple[str, ...]
    """Top-level keys present but not acted on."""

    @property
    def root(self) -> Path:
        """The folder relative paths (graphs, env, dependencies) resolve against."""
        return self.path.parent


def _fail(path: Path, key: str, problem: str, fix: str) -> ConfigError:
    where = f"{path}: {key}: " if key else f"{path}: "
    return ConfigError(f"{where}{problem}; fix: {fix}")


def _no_duplicates(path: Path) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise _fail(
                    path,
                    key,
                    "the key appears twice (JSON keeps only the last)",
                    f"keep one '{key}', or give the second graph another id",
                )
            seen[key] = value
        return seen

    return hook


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise _fail(
            path,
            "",
            "no such file",
            "run from the folder that holds your langgraph.json, or pass --config PATH "
            "(`keel new DIR` writes a project with one)",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(path, "", f"cannot be read ({exc})", "make it a readable UTF-8 file") from exc
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates(path))
    except json.JSONDecodeError as exc:
        raise _fail(
            path,
            "",
            f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
            "correct the JSON there (no comments or trailing commas)",
        ) from exc


def _graph_spec(path: Path, graph_id: Any, value: Any) -> GraphSpec:
    key = f"graphs.{graph_id}"
    if not isinstance(graph_id, str) or not graph_id.strip() or not graph_id.isprintable():
        raise _fail(path, key, "a graph id must be a non-empty name", f"use e.g. {EXAMPLE}")
    if len(graph_id) > 128 or graph_id != graph_id.strip():
        raise _fail(
            path,
            key,
            "a graph id must be 1-128 characters without surrounding spaces",
            "shorten or trim the id",
        )
    description = ""
    if isinstance(value, Mapping):
        description = value.get("description") or ""
        if not isinstance(description, str):
            raise _fail(path, f"{key}.description", "must be a string", "write it as text")
        value = value.get("path")
    if not isinstance(value, str) or not value.strip():
        raise _fail(
            path,
            key,
            f"expected a string like './agent.py:agent' or 'package.module:graph', got "
            f"{json.dumps(value)}",
            'write "./file.py:attribute" (or {"path": "./file.py:attribute", "description": "…"})',
        )
    if ":" not in value or not value.rsplit(":", 1)[1].strip() or not value.rsplit(":", 1)[0]:
        raise _fail(
            path,
            key,
            f"'{value}' does not name an attribute",
            f"add ':' and the variable's name, e.g. '{value.rstrip(':')}:agent'",
        )
    attr = value.rsplit(":", 1)[1]
    if not attr.isidentifier():
        raise _fail(
            path, key, f"'{attr}' is not a Python name", "name a module-level variable or function"
        )
    return GraphSpec(graph_id, value, description)


def _env(path: Path, value: Any) -> str | Mapping[str, str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            raise _fail(path, "env", "is empty", 'name a .env file (e.g. "./.env") or remove it')
        return value
    if isinstance(value, Mapping):
        env: dict[str, str] = {}
        for name, item in value.items():
            if not name or "=" in name or "\0" in name:
                raise _fail(path, f"env.{name}", "is not a variable name", "use NAME: value")
            if isinstance(item, bool):
                env[name] = "true" if item else "false"
            elif isinstance(item, str | int | float):
                env[name] = str(item)
            else:
                raise _fail(
                    path,
                    f"env.{name}",
                    f"must be a string, got {json.dumps(item)}",
                    "write the value as text",
                )
        return env
    raise _fail(
        path,
        "env",
        f"must be a path to a .env file or a mapping, got {json.dumps(value)}",
        'write "env": "./.env" or "env": {"NAME": "value"}',
    )


def _dependencies(path: Path, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(
            path,
            "dependencies",
            f"must be a list of strings, got {json.dumps(value)}",
            'write "dependencies": ["."] (local folders, or packages you pip install)',
        )
    return tuple(value)


def read_config_file(path: Path) -> ConfigFile:
    """Read `path` and check its shape; raise `ConfigError` naming the file, key and fix."""
    path = path.expanduser().absolute()
    data = _load_json(path)
    if not isinstance(data, Mapping):
        raise _fail(path, "", "the file must hold one JSON object", f"write {{{EXAMPLE}}}")
    graphs = data.get("graphs")
    if graphs is None:
        raise _fail(path, "graphs", "the key is missing", f"add {EXAMPLE}")
    if not isinstance(graphs, Mapping) or not graphs:
        raise _fail(
            path,
            "graphs",
            "must map at least one graph id to './file.py:attribute'",
            f"write {EXAMPLE}",
        )
    specs = tuple(_graph_spec(path, graph_id, value) for graph_id, value in graphs.items())
    ignored = tuple(k for k in data if k not in HONOURED_KEYS and k != "$schema")
    return ConfigFile(
        path=path,
        graphs=specs,
        env=_env(path, data.get("env")),
        dependencies=_dependencies(path, data.get("dependencies")),
        ignored=ignored,
    )
