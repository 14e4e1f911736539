"""`Project`: the graphs Keel serves and runs, by id, and what to tell the user about them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from keel.errors import UsageError
from keel.project.entries import GraphEntry

__all__ = ["Project"]


@dataclass(frozen=True)
class Project:
    """A loaded `langgraph.json` (or the built-in default when there is none)."""

    graphs: Mapping[str, GraphEntry]
    """Graph id -> entry, in the file's order."""
    path: Path | None = None
    """The `langgraph.json` read; None for the built-in default."""
    notes: tuple[str, ...] = field(default=())
    """Things the user should know: keys ignored, an env file not found, variables kept."""

    @property
    def root(self) -> Path:
        """The project folder (the config's folder; the working directory for the default)."""
        return self.path.parent if self.path is not None else Path.cwd()

    @property
    def default(self) -> GraphEntry:
        """What `keel run` runs without `--agent`: the first Keel agent, else the first graph."""
        entries = list(self.graphs.values())
        return next((e for e in entries if e.kind == "keel"), entries[0])

    def get(self, graph_id: str | None) -> GraphEntry:
        """The entry `graph_id` names (None: the default); `UsageError` listing the ids."""
        if graph_id is None:
            return self.default
        try:
            return self.graphs[graph_id]
        except KeyError:
            where = str(self.path) if self.path else "the built-in project"
            raise UsageError(
                f"no graph '{graph_id}' in {where}; known: {', '.join(self.graphs)}"
            ) from None
