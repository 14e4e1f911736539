"""The recorded run tree of a trace: one `_Rec` per run, its walk, and what is worked out
from the tree before it is sent (why it is kept, tags and totals, tool runs, light pruning).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

from keel.observability.events import RUN_MARKS

HIDDEN = "langsmith:hidden"


class _Rec:
    """One run of the trace, as recorded: what LangSmith gets once it is sent."""

    __slots__ = (
        "children",
        "end",
        "error",
        "extra",
        "id",
        "inputs",
        "metadata",
        "name",
        "outputs",
        "parent",
        "run_type",
        "serialized",
        "start",
        "tags",
    )

    def __init__(
        self,
        run_id: UUID,
        parent: _Rec | None,
        name: str,
        run_type: str,
        inputs: Any,
        *,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        serialized: Any = None,
        start: datetime | None = None,
    ) -> None:
        self.id = run_id
        self.parent = parent
        self.name = name
        self.run_type = run_type
        self.inputs = inputs
        self.outputs: Any = None
        self.error: str | None = None
        self.tags = list(tags) if tags else []
        self.metadata = dict(metadata) if metadata else {}
        self.extra = extra if extra is not None else {}
        self.serialized = serialized
        self.start = start or datetime.now(UTC)
        self.end: datetime | None = None
        self.children: list[_Rec] = []


def _walk(rec: _Rec) -> Iterator[_Rec]:
    yield rec
    for child in rec.children:
        yield from _walk(child)


def _node(rec: _Rec) -> str | None:
    """The graph node this run is (LangGraph's `langgraph_node` names the run itself)."""
    node = rec.metadata.get("langgraph_node")
    return str(node) if node is not None and rec.name == node else None


def _steps(rec: _Rec) -> list[Mapping[str, Any]]:
    outputs = rec.outputs
    trace = outputs.get("trace") if isinstance(outputs, Mapping) else None
    return [s for s in trace or () if isinstance(s, Mapping)]


def _decorate(root: _Rec) -> set[str]:
    """Tag nodes and root, add totals to the root; returns why the run must be kept."""
    reasons: set[str] = set()
    for rec in _walk(root):
        node = _node(rec)
        if node is None:
            continue
        tags = set()
        for step in _steps(rec):
            signal = step.get("signal")
            if signal in ("retry", "repair"):
                tags.add(str(signal))
            if signal == "degrade":
                reasons.add("degraded")
            if step.get("cached"):
                tags.add("cached")
        if node == "fallback":
            tags.add("fallback")
        if tags:
            rec.tags = sorted(set(rec.tags) | tags)
            reasons |= tags - {"cached"}
    outputs: Mapping[str, Any] = root.outputs if isinstance(root.outputs, Mapping) else {}
    outcome = outputs.get("outcome") or {}
    usage = outputs.get("usage") or {}
    success = bool(outcome.get("success")) and root.error is None
    label = "success" if success else "failed" if outcome or root.error else "unfinished"
    if not success:
        reasons.add(label)
    tags_seen = {t for r in _walk(root) for t in r.tags if r is not root}
    tags_seen |= RUN_MARKS.get() or set()
    root_tags = tags_seen & {"retry", "repair", "fallback", "cached"}
    root.tags = sorted(set(root.tags) | root_tags)
    root.metadata.update(
        {
            "tokens": usage.get("total_tokens", 0),
            "cost_usd": usage.get("cost_usd", 0.0),
            "model_calls": usage.get("model_calls", 0),
            "outcome": label,
            "error_code": outcome.get("error_code"),
            "tier": outputs.get("tier"),
            "keel_kept_because": sorted(reasons) or ["sampled"],
        }
    )
    return reasons


def _add_tool_runs(root: _Rec) -> None:
    for rec in list(_walk(root)):
        if _node(rec) != "act":
            continue
        for i, step in enumerate(_steps(rec)):
            ms = float(step.get("ms") or 0.0)
            args = step.get("action_input")
            error = step.get("error_code")
            child = _Rec(
                uuid5(rec.id, f"tool-{i}"),  # the same ids if the trace is built again
                rec,
                str(step.get("action") or "tool"),
                "tool",
                dict(args) if isinstance(args, Mapping) else {"input": args},
                tags=["tool"],
                metadata={"keel_ms": ms},
                start=rec.start,
            )
            child.outputs = {"output": step.get("observation")}
            child.error = f"{error}: {step.get('observation')}" if error else None
            child.end = rec.start + timedelta(milliseconds=ms)
            rec.children.append(child)


def _prune_hidden(root: _Rec) -> None:
    """Light payloads: no hidden bookkeeping runs, and no other chains under a node
    (such a run's input is the whole state, and light mode drops its output: it would
    say only that it ran)."""
    for rec in _walk(root):
        node = rec is not root and _node(rec) is not None
        rec.children = [
            c
            for c in rec.children
            if c.children
            or not (HIDDEN in c.tags or (node and c.run_type == "chain" and _node(c) is None))
        ]
