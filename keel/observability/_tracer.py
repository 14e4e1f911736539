"""`KeelTracer`: LangChain's LangSmith tracer, sending each run's tree once, when it ends.

The stock `LangChainTracer` posts every run when it starts and patches it when it ends:
two requests per node, model call and edge, each with the whole graph state as input.
This one keeps the tree in memory until the graph run ends, then:
- decides whether to send it (tail sampling): failed, degraded, retried and repaired runs
  always; successful ones with probability `sample_rate`;
- adds the run's totals to the root (tokens, cost, outcome) and tags (`retry`, `repair`,
  `fallback`, `cached`) to the root and to the node that earned them;
- adds a `tool` run under `act` for each recorded tool call (Keel's tools are plain
  functions, so LangChain never sees them): name, arguments, observation, error, duration;
- in `light` mode, drops the whole-state inputs of node runs (model and tool runs keep
  theirs), the edge runs and hidden bookkeeping runs, and lists a model run's bound tools by
  name (their schemas would repeat in every model run);
- masks secrets (`keel.observability.redact`) in every input, output and error it sends,
  tool arguments included;
- posts each run once, complete, through the LangSmith client's background queue.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

import orjson
from langchain_core.env import get_runtime_environment
from langchain_core.load import dumpd
from langchain_core.messages import BaseMessage
from langchain_core.tracers.langchain import (
    LangChainTracer,
    _patch_missing_metadata,
    log_error_once,
)
from langchain_core.tracers.schemas import Run
from pydantic import BaseModel

from keel.observability.events import RUN_MARKS
from keel.observability.redact import MASK, json_may_hold_secret, redact
from keel.observability.tracing import TracePolicy

__all__ = ["KeelTracer"]

HIDDEN = "langsmith:hidden"
_RAW = "__keel_raw_messages"
"""Chat-model inputs kept as message objects until the run is sent."""
_ROOT_LIGHT_INPUTS = ("question", "tenant", "run_id")
_ROOT_LIGHT_OUTPUTS = ("outcome", "usage", "answer", "tier", "errors")
_NODE_LIGHT_INPUTS = ("iteration", "signal", "model_attempt", "repair_attempt", "tier")
_MAX_DEPTH = 32
"""Nesting followed when masking (as `redact`); anything deeper is masked whole."""
_MESSAGE_DEPTH = 3
"""A message's depth in a model run's inputs: `{"messages": [[message, …]]}`."""


def _steps(run: Run) -> list[Mapping[str, Any]]:
    outputs = run.outputs or {}
    trace = outputs.get("trace") if isinstance(outputs, Mapping) else None
    return [s for s in trace or () if isinstance(s, Mapping)]


def _walk(run: Run) -> Iterator[Run]:
    yield run
    for child in run.child_runs:
        yield from _walk(child)


class _Masker:
    """Secrets out of one trace's payloads, as `redact` masks them, in one pass.

    Messages and other models become the data the client would send (`model_dump`), then
    every string and key is masked by `redact`. A trace repeats much of its text (each model
    run's input holds the whole conversation so far, the system prompt included), so each
    distinct string is masked once per trace, and each key checked once.
    """

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}
        self._secret_keys: dict[str, bool] = {}

    def text(self, value: str) -> str:
        done = self._texts.get(value)
        if done is None:
            done = self._texts[value] = redact(value)
        return done

    def _secret(self, key: str) -> bool:
        known = self._secret_keys.get(key)
        if known is None:  # redact's own rule for keys: a named secret's value is masked
            known = self._secret_keys[key] = redact({key: 0})[key] == MASK
        return known

    def __call__(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if depth > _MAX_DEPTH:
            return MASK
        if isinstance(value, BaseModel):
            return self(value.model_dump(mode="json"), depth)
        if isinstance(value, Mapping):
            return {
                k: MASK
                if isinstance(k, str) and v is not None and self._secret(k)
                else self(v, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [self(v, depth + 1) for v in value]
        return self.text(str(value))

    def payload(self, value: Any) -> Any:
        """`value` masked, or `value` itself when its JSON shows nothing `redact` could mask
        (`json_may_hold_secret`): one serialisation in C instead of a walk in Python over
        every key and string. Anything orjson does not serialise natively is walked."""
        try:
            text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:
            return self(value)
        return self(value) if json_may_hold_secret(text.decode()) else value

    def run(self, run: Run, *, inputs_masked: bool = False) -> None:
        """Secrets out of everything sent: inputs (tool arguments), outputs and the error."""
        if not inputs_masked:
            run.inputs = self.payload(run.inputs or {})
        if run.outputs is not None:
            run.outputs = self.payload(run.outputs)
        if run.error:
            run.error = self.text(run.error)


def _dumped(message: BaseMessage, dumped: dict[int, Any], mask: _Masker) -> Any:
    """`dumpd(message)` masked, once per message of a trace: every later model run's prompt
    repeats it (the messages live as long as the trace, so their ids stay theirs). Masked at
    the depth a message has in a model run's inputs (`{"messages": [[message]]}`), so the
    result is what masking those inputs whole would give."""
    key = id(message)
    found = dumped.get(key)
    if found is None:
        found = dumped[key] = mask(dumpd(message), _MESSAGE_DEPTH)
    return found


def _tool_names(tools: Any) -> list[str]:
    """The bound tools by name (light payloads: every model run would repeat the schemas)."""
    names = []
    for t in tools if isinstance(tools, list | tuple) else ():
        function = t.get("function") if isinstance(t, Mapping) else None
        name = function.get("name") if isinstance(function, Mapping) else None
        names.append(str(name) if name is not None else "?")
    return names


def _node(run: Run) -> str | None:
    node = (run.extra or {}).get("metadata", {}).get("langgraph_node")
    return str(node) if node is not None and run.name == node else None


_SKIPPED = cast(Run, None)
"""What the callbacks return for a run they do not record (callers ignore the value; a
`Run` built at import would read LangSmith's project from the environment too early)."""


class KeelTracer(LangChainTracer):
    """A LangSmith tracer that sends each graph run's tree once, complete, if sampled."""

    def __init__(self, *args: Any, policy: TracePolicy | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.policy = policy or TracePolicy()
        self._skipped: set[UUID] = set()
        """Edge runs not recorded (light payloads), shared with this tracer's copies."""

    def copy_with_metadata_defaults(
        self,
        *,
        metadata: Mapping[str, str] | None = None,
        tags: list[str] | None = None,
    ) -> LangChainTracer:
        clone = super().copy_with_metadata_defaults(metadata=metadata, tags=tags)
        if isinstance(clone, KeelTracer):
            clone.policy = self.policy
            clone._skipped = self._skipped
        return clone

    def _is_edge(self, parent_run_id: UUID | None, name: str | None, metadata: Any) -> bool:
        """A node's routing function (light payloads send no edge runs, so none is built):
        a chain directly under a node run, of that node's step, not the node itself."""
        if parent_run_id is None or self.policy.payloads != "light":
            return False
        parent = self.run_map.get(str(parent_run_id))
        if parent is None or parent.parent_run_id is None:
            return False
        node = _node(parent)
        step = metadata.get("langgraph_node") if isinstance(metadata, Mapping) else None
        return node is not None and step == node and name != node

    def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        run_type: str | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> Run:
        if self._is_edge(parent_run_id, name, metadata):
            self._skipped.add(run_id)
            return _SKIPPED
        return super().on_chain_start(
            serialized,
            inputs,
            run_id=run_id,
            tags=tags,
            parent_run_id=parent_run_id,
            metadata=metadata,
            run_type=run_type,
            name=name,
            **kwargs,
        )

    def on_chain_end(
        self,
        outputs: dict[str, Any],
        *,
        run_id: UUID,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Run:
        if run_id in self._skipped:
            self._skipped.discard(run_id)
            return _SKIPPED
        return super().on_chain_end(outputs, run_id=run_id, inputs=inputs, **kwargs)

    def on_chain_error(
        self,
        error: BaseException,
        *,
        inputs: dict[str, Any] | None = None,
        run_id: UUID,
        **kwargs: Any,
    ) -> Run:
        if run_id in self._skipped:
            self._skipped.discard(run_id)
            return _SKIPPED
        return super().on_chain_error(error, inputs=inputs, run_id=run_id, **kwargs)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> Run:
        """As LangChain's, but the messages are serialized only if the run is sent."""
        start_time = datetime.now(UTC)
        if metadata:
            kwargs.update({"metadata": metadata})
        run = Run(
            id=run_id,
            parent_run_id=parent_run_id,
            serialized=serialized,
            inputs={_RAW: messages},
            **self._get_run_kwargs(parent_run_id, kwargs),
            events=[{"name": "start", "time": start_time}],
            start_time=start_time,
            run_type="llm",
            tags=tags,
            name=name,
        )
        self._start_trace(run)
        self._on_chat_model_start(run)
        return run

    def _persist_run(self, run: Run) -> None:
        """No copy of the finished root is kept (`get_run_url` is not supported)."""

    def _persist_run_single(self, run: Run) -> None:
        self._maybe_send(run)

    def _update_run_single(self, run: Run) -> None:  # type: ignore[override]
        self._maybe_send(run)

    def _maybe_send(self, run: Run) -> None:
        if run.parent_run_id is not None or run.end_time is None:
            return
        if run.extra.get("__disabled"):
            return
        try:
            self._send(run)
        except Exception as exc:  # tracing must never fail a run
            log_error_once("post", exc)

    def _send(self, root: Run) -> None:
        reasons = self._decorate(root)
        if not self.policy.keep(reasons):
            return
        self._add_tool_runs(root)
        light = self.policy.payloads == "light"
        if light:
            self._prune_hidden(root)
        root.extra["runtime"] = get_runtime_environment()
        mask = _Masker()
        dumped: dict[int, Any] = {}  # each message once, though every later model run has it
        for run in _walk(root):
            raw = run.inputs.get(_RAW) if isinstance(run.inputs, Mapping) else None
            if raw is not None:
                batches = [[_dumped(m, dumped, mask) for m in batch] for batch in raw]
                run.inputs = {"messages": batches}
            _patch_missing_metadata(self, run)
            run.tags = sorted(set(run.tags or ()) | set(self.tags or ()))
            if light:
                self._lighten(run, root)
            mask.run(run, inputs_masked=raw is not None)
            if run.ls_client is not self.client:
                run.ls_client = self.client
            run.post(exclude_child_runs=True)

    def _decorate(self, root: Run) -> set[str]:
        """Tag nodes and root, add totals to the root; returns why the run must be kept."""
        reasons: set[str] = set()
        for run in _walk(root):
            node = _node(run)
            if node is None:
                continue
            tags = set()
            for step in _steps(run):
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
                run.tags = sorted(set(run.tags or ()) | tags)
                reasons |= tags - {"cached"}
        outputs: Mapping[str, Any] = root.outputs or {}
        outcome = outputs.get("outcome") or {}
        usage = outputs.get("usage") or {}
        success = bool(outcome.get("success")) and root.error is None
        label = "success" if success else "failed" if outcome or root.error else "unfinished"
        if not success:
            reasons.add(label)
        tags_seen = {t for r in _walk(root) for t in (r.tags or ()) if r is not root}
        tags_seen |= RUN_MARKS.get() or set()
        root_tags = tags_seen & {"retry", "repair", "fallback", "cached"}
        root.tags = sorted(set(root.tags or ()) | root_tags)
        root.add_metadata(
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

    def _add_tool_runs(self, root: Run) -> None:
        for run in list(_walk(root)):
            if _node(run) != "act":
                continue
            for step in _steps(run):
                start = run.start_time
                ms = float(step.get("ms") or 0.0)
                args = step.get("action_input")
                error = step.get("error_code")
                child = run.create_child(
                    name=str(step.get("action") or "tool"),
                    run_type="tool",
                    inputs=dict(args) if isinstance(args, Mapping) else {"input": args},
                    outputs={"output": step.get("observation")},
                    error=f"{error}: {step.get('observation')}" if error else None,
                    start_time=start,
                    end_time=start + timedelta(milliseconds=ms),
                    tags=["tool"],
                )
                child.extra["metadata"] = {**child.extra.get("metadata", {}), "keel_ms": ms}

    @staticmethod
    def _prune_hidden(root: Run) -> None:
        """Light payloads: no hidden bookkeeping runs, and no edge runs (a node's routing
        function, whose input is the whole state and whose output light mode drops: it
        would say only that it ran)."""
        for run in _walk(root):
            node = run is not root and _node(run) is not None
            run.child_runs = [
                c
                for c in run.child_runs
                if c.child_runs
                or not (
                    HIDDEN in (c.tags or ())
                    or (node and c.run_type == "chain" and _node(c) is None)
                )
            ]

    @staticmethod
    def _lighten(run: Run, root: Run) -> None:
        run.serialized = {}
        run.events = []
        params = run.extra.get("invocation_params")
        if isinstance(params, Mapping) and params.get("tools"):
            run.extra["invocation_params"] = {**params, "tools": _tool_names(params["tools"])}
        if run.run_type != "chain":
            return
        inputs = run.inputs if isinstance(run.inputs, Mapping) else {}
        outputs = run.outputs if isinstance(run.outputs, Mapping) else {}
        if run is root:
            run.inputs = {k: inputs[k] for k in _ROOT_LIGHT_INPUTS if k in inputs}
            run.outputs = {k: outputs[k] for k in _ROOT_LIGHT_OUTPUTS if k in outputs}
            return
        run.inputs = {k: inputs[k] for k in _NODE_LIGHT_INPUTS if k in inputs}
        if _node(run) is not None:
            run.outputs = {k: v for k, v in outputs.items() if k != "messages"}
        else:
            run.outputs = {}
