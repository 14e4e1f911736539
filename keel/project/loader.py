"""`load_project`: read `langgraph.json`, apply its env and paths, import and check every graph.

Everything happens at start-up, so a bad file, a missing attribute or an object that is not a
graph stops `keel serve` before it takes a request, with the file, the key and the fix.
"""

from __future__ import annotations

from pathlib import Path

from keel.graphs.data_analyst import agent as builtin_agent
from keel.project.entries import GraphEntry, classify
from keel.project.model import Project

__all__ = ["BUILTIN_ID", "CONFIG_FILE", "LEGACY_ID", "builtin_project", "load_project"]

CONFIG_FILE = "langgraph.json"
BUILTIN_ID = "data_analyst"
"""The built-in data assistant's graph id."""
LEGACY_ID = "agent"
"""Its id before projects existed: old checkpoints, run records and clients use it."""
BUILTIN_SOURCE = "keel.graphs.data_analyst:agent"


def _with_legacy_id(graphs: dict[str, GraphEntry]) -> dict[str, GraphEntry]:
    """Also serve the built-in agent as `agent` when the project lists it and not that id."""
    if LEGACY_ID in graphs:
        return graphs
    for entry in list(graphs.values()):
        if entry.kind == "keel" and entry.agent is builtin_agent:
            graphs[LEGACY_ID] = GraphEntry(
                LEGACY_ID, entry.source, "keel", agent=entry.agent, description=entry.description
            )
            break
    return graphs


def builtin_project() -> Project:
    """The project without a file: the built-in data assistant, as `data_analyst` and `agent`."""
    graphs = {
        gid: GraphEntry(
            gid, BUILTIN_SOURCE, "keel", agent=builtin_agent, description=builtin_agent.description
        )
        for gid in (BUILTIN_ID, LEGACY_ID)
    }
    return Project(graphs=graphs)


def load_project(path: Path | None = None) -> Project:
    """The project `path` (a `langgraph.json`) describes; without `path`, `./langgraph.json`
    if there is one, else the built-in data assistant. Raises `keel.ConfigError` naming the
    file, the key and the fix."""
    if path is None:
        found = Path.cwd() / CONFIG_FILE
        if not found.is_file():
            return builtin_project()
        path = found
    # A file to read: its parser, `env` (python-dotenv) and importer load only now, so a run
    # of the built-in assistant loads none of them (issue 19).
    from keel.project.config_file import HONOURED_KEYS, read_config_file
    from keel.project.env import apply_env, project_paths
    from keel.project.importer import import_target

    file = read_config_file(Path(path))
    notes: list[str] = []
    if file.ignored:
        notes.append(
            f"{file.path}: ignored (Keel reads only {', '.join(HONOURED_KEYS)}): "
            f"{', '.join(file.ignored)}"
        )
    notes += apply_env(file.path, file.env)
    project_paths(file.path, file.dependencies)
    graphs: dict[str, GraphEntry] = {}
    for spec in file.graphs:
        obj = import_target(file.path, spec)
        entry = classify(file.path, spec.graph_id, spec.source, obj, spec.description)
        if entry.agent is not None and entry.agent.name != spec.graph_id:
            notes.append(
                f"{file.path}: graphs.{spec.graph_id}: the agent is named "
                f"'{entry.agent.name}'; it is served and run as '{spec.graph_id}'"
            )
        graphs[spec.graph_id] = entry
    return Project(graphs=_with_legacy_id(graphs), path=file.path, notes=tuple(notes))
