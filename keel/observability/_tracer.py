"""`KeelTracer`: a run's LangSmith trace, recorded cheaply and sent once, when the run ends.

The stock `LangChainTracer` builds a LangSmith `RunTree` (a validated pydantic model) for
every node, edge, model call and tool when it starts, serialises each model prompt as it
starts, and posts and patches every run while the graph runs. This one keeps a small
record per run (name, times, ids and references to what LangChain handed it: no copies, no
validation, no serialisation) until the graph run ends, then:
- decides whether to send it (tail sampling): failed, degraded, retried and repaired runs
  always; successful ones with probability `sample_rate`. A run sampled out costs only the
  records;
- adds the run's totals to the root (tokens, cost, outcome) and tags (`retry`, `repair`,
  `fallback`, `cached`) to the root and to the node that earned them;
- adds a `tool` run under `act` for each recorded tool call (Keel's tools are plain
  functions, so LangChain never sees them): name, arguments, observation, error, duration;
- in `light` mode, keeps no whole-state inputs of node runs (model and tool runs keep
  theirs; the record holds only the small fields from the start), drops the edge runs (not
  even recorded) and hidden bookkeeping runs, and lists a model run's bound tools by name
  (their schemas would repeat in every model run);
- masks secrets (`keel.observability.redact`) in every input, output and error it sends,
  tool arguments included;
- hands each run, complete, to the LangSmith client (`Client.create_run` with the trace id
  and dotted order set: the client's background queue batches the runs of many traces
  into a few multipart requests).

The records and their tree live in `_trace_records`, the serialisation and masking of
payloads in `_trace_payloads`; this module holds the callbacks and the sending.

It is a `LangChainTracer` only by type: LangChain adds its own tracer to any run whose
callbacks hold none when `LANGSMITH_TRACING` is set, which would send every run twice.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID

from langchain_core.env import get_runtime_environment
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult
from langchain_core.tracers.langchain import LangChainTracer
from langsmith.run_helpers import get_tracing_context

from keel.observability._trace_payloads import _Dumper, _llm_outputs, _Masker, _tool_names, _usage
from keel.observability._trace_records import (
    _add_tool_runs,
    _decorate,
    _node,
    _prune_hidden,
    _Rec,
)
from keel.observability.tracing import TracePolicy
from keel.types import flat

__all__ = ["KeelTracer"]

_ROOT_LIGHT_INPUTS = ("question", "tenant", "run_id")
_ROOT_LIGHT_OUTPUTS = ("outcome", "usage", "answer", "tier", "errors")
_NODE_LIGHT_INPUTS = ("iteration", "signal", "model_attempt", "repair_attempt", "tier")

_log = logging.getLogger(__name__)
_LOGGED: set[str] = set()


def _log_once(what: str, exc: Exception) -> None:
    if what not in _LOGGED:
        _LOGGED.add(what)
        _log.warning("LangSmith trace not sent (%s): %r", what, exc)


def _name(name: str | None, serialized: Mapping[str, Any] | None, default: str) -> str:
    if name:
        return name
    if isinstance(serialized, Mapping):
        found = serialized.get("name") or (serialized.get("id") or [None])[-1]
        if found:
            return str(found)
    return default


def _stacktrace(error: BaseException) -> str:
    """The error as LangChain's tracers write it: its repr, then the traceback."""
    msg = repr(error)
    try:
        return (msg + "\n\n".join(traceback.format_exception(error))).strip()
    except Exception:
        return msg


def _as_dict(value: Any, key: str) -> dict[str, Any]:
    return value if isinstance(value, dict) else {key: value}


def _pick(value: Any, keys: Sequence[str]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        return {}
    return {k: value[k] for k in keys if k in value}


class KeelTracer(LangChainTracer):
    """A LangSmith tracer that sends each graph run's tree once, complete, if sampled."""

    def __init__(
        self,
        project_name: str | None = None,
        client: Any = None,
        *,
        policy: TracePolicy | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(project_name=project_name, client=client, tags=tags, **kwargs)
        self.policy = policy or TracePolicy()
        self.run_metadata: dict[str, Any] = dict(metadata) if metadata else {}
        self._runs: dict[UUID, _Rec] = {}
        self._skipped: set[UUID] = set()
        """Runs not recorded: edge runs (light payloads), and everything under them."""

    @property
    def ignores_edge_runs(self) -> bool:
        """Light payloads drop edge runs: the agent graph's edges need not start one for
        this handler (see `keel.graphs.agent`); full payloads keep them."""
        return self.policy.payloads == "light"

    def copy_with_metadata_defaults(
        self,
        *,
        metadata: Mapping[str, str] | None = None,
        tags: list[str] | None = None,
    ) -> LangChainTracer:
        """The same tracer: its records are the run's, wherever LangChain hands it on."""
        for k, v in (metadata or {}).items():
            self.run_metadata.setdefault(k, v)
        return self

    # recording

    def _start(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        name: str,
        run_type: str,
        inputs: Any,
        tags: list[str] | None,
        metadata: dict[str, Any] | None,
        extra: dict[str, Any],
        serialized: Any,
    ) -> None:
        parent = None
        if parent_run_id is not None:
            if parent_run_id in self._skipped:
                self._skipped.add(run_id)
                return
            parent = self._runs.get(parent_run_id)
        if parent is None and get_tracing_context().get("enabled") is False:
            self._skipped.add(run_id)  # tracing switched off around this run
            return
        light = self.policy.payloads == "light"
        rec = _Rec(
            run_id,
            parent,
            name,
            run_type,
            inputs,
            tags=tags,
            metadata=metadata,
            extra=extra,
            serialized=None if light else serialized,
        )
        if parent is not None:
            parent.children.append(rec)
        self._runs[run_id] = rec

    def _end(self, run_id: UUID, outputs: Any = None, error: BaseException | None = None) -> None:
        rec = self._runs.pop(run_id, None)
        if rec is None:
            self._skipped.discard(run_id)
            return
        rec.end = datetime.now(UTC)
        if outputs is not None:
            rec.outputs = outputs
        if error is not None:
            rec.error = _stacktrace(error)
        if rec.parent is None:
            try:
                self._send(rec)
            except Exception as exc:  # tracing must never fail a run
                _log_once("post", exc)

    def _chain_inputs(self, inputs: Any, root: bool) -> Any:
        if self.policy.payloads != "light":
            return _as_dict(inputs, "input")
        if root:
            return _pick(inputs, _ROOT_LIGHT_INPUTS)
        # a node's input is the graph's channels: `control` holds the loop's counters
        return _pick(flat(inputs) if isinstance(inputs, Mapping) else inputs, _NODE_LIGHT_INPUTS)

    def _is_edge(self, parent_run_id: UUID | None, name: str | None, metadata: Any) -> bool:
        """A node's routing function (light payloads send no edge runs, so none is recorded):
        a chain directly under a node run, of that node's step, not the node itself."""
        if parent_run_id is None or self.policy.payloads != "light":
            return False
        parent = self._runs.get(parent_run_id)
        if parent is None or parent.parent is None:
            return False
        node = _node(parent)
        step = metadata.get("langgraph_node") if isinstance(metadata, Mapping) else None
        return node is not None and step == node and name != node

    def on_chain_start(  # type: ignore[override]
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
    ) -> None:
        if self._is_edge(parent_run_id, name, metadata):
            self._skipped.add(run_id)
            return
        root = parent_run_id is None or parent_run_id not in self._runs
        self._start(
            run_id,
            parent_run_id,
            _name(name, serialized, "Chain"),
            run_type or "chain",
            self._chain_inputs(inputs, root),
            tags,
            metadata,
            kwargs,
            serialized,
        )

    def on_chain_end(  # type: ignore[override]
        self,
        outputs: dict[str, Any],
        *,
        run_id: UUID,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        rec = self._runs.get(run_id)
        if rec is not None and inputs is not None:
            rec.inputs = self._chain_inputs(inputs, rec.parent is None)
        self._end(run_id, outputs=_as_dict(outputs, "output"))

    def on_chain_error(  # type: ignore[override]
        self,
        error: BaseException,
        *,
        inputs: dict[str, Any] | None = None,
        run_id: UUID,
        **kwargs: Any,
    ) -> None:
        rec = self._runs.get(run_id)
        if rec is not None and inputs is not None:
            rec.inputs = self._chain_inputs(inputs, rec.parent is None)
        self._end(run_id, error=error)

    def on_chat_model_start(  # type: ignore[override]
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
    ) -> None:
        """The messages are kept as they are; they are serialised only if the run is sent."""
        self._start(
            run_id,
            parent_run_id,
            _name(name, serialized, "ChatModel"),
            "llm",
            messages,
            tags,
            metadata,
            kwargs,
            serialized,
        )

    def on_llm_start(  # type: ignore[override]
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._start(
            run_id,
            parent_run_id,
            _name(name, serialized, "LLM"),
            "llm",
            {"prompts": prompts},
            tags,
            metadata,
            kwargs,
            serialized,
        )

    def on_llm_new_token(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Streamed tokens are not recorded (the reply is, when the call ends)."""

    def on_retry(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Retries show in Keel's own trace rows and tags, not as run events."""

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:  # type: ignore[override]
        self._end(run_id, outputs=response)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:  # type: ignore[override]
        self._end(run_id, error=error)

    def on_tool_start(  # type: ignore[override]
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        args = inputs if isinstance(inputs, dict) else {"input": input_str}
        self._start(
            run_id,
            parent_run_id,
            _name(name, serialized, "Tool"),
            "tool",
            args,
            tags,
            metadata,
            kwargs,
            serialized,
        )

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:  # type: ignore[override]
        self._end(run_id, outputs={"output": output})

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:  # type: ignore[override]
        self._end(run_id, error=error)

    def on_retriever_start(  # type: ignore[override]
        self,
        serialized: dict[str, Any],
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._start(
            run_id,
            parent_run_id,
            _name(name, serialized, "Retriever"),
            "retriever",
            {"query": query},
            tags,
            metadata,
            kwargs,
            serialized,
        )

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> None:  # type: ignore[override]
        self._end(run_id, outputs={"documents": documents})

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:  # type: ignore[override]
        self._end(run_id, error=error)

    # sending

    def _send(self, root: _Rec) -> None:
        reasons = _decorate(root)
        if not self.policy.keep(reasons):
            return
        _add_tool_runs(root)
        light = self.policy.payloads == "light"
        if light:
            _prune_hidden(root)
        root.extra["runtime"] = get_runtime_environment()
        mask = _Masker()
        dump = _Dumper(mask)
        stack: list[tuple[_Rec, str | None]] = [(root, None)]
        while stack:
            rec, above = stack.pop()
            own = rec.start.strftime("%Y%m%dT%H%M%S%fZ") + str(rec.id)
            dotted = own if above is None else f"{above}.{own}"
            self._post(rec, root, dotted, light, mask, dump)
            stack.extend((child, dotted) for child in reversed(rec.children))

    def _post(
        self, rec: _Rec, root: _Rec, dotted: str, light: bool, mask: _Masker, dump: _Dumper
    ) -> None:
        inputs: Any = rec.inputs
        outputs: Any = rec.outputs
        extra = dict(rec.extra)
        metadata = {**self.run_metadata, **rec.metadata}
        if rec.run_type == "llm" and isinstance(inputs, list):
            inputs = {"messages": [[dump(m) for m in batch] for batch in inputs]}
        else:
            inputs = mask.payload(inputs if inputs is not None else {})
        if isinstance(outputs, LLMResult):
            usage, calls = _usage(outputs)
            if usage is not None:
                metadata["usage_metadata"] = usage
            if calls:
                extra["tool_call_count"] = calls
            outputs = mask.payload(_llm_outputs(outputs, dump))
        elif outputs is not None:
            if light and rec.run_type == "chain":
                if rec is root:
                    outputs = _pick(outputs, _ROOT_LIGHT_OUTPUTS)
                elif _node(rec) is not None:
                    outputs = {k: v for k, v in outputs.items() if k != "messages"}
                else:
                    outputs = {}
            outputs = mask.payload(outputs)
        extra["metadata"] = metadata
        if light:
            params = extra.get("invocation_params")
            if isinstance(params, Mapping) and params.get("tools"):
                extra["invocation_params"] = {**params, "tools": _tool_names(params["tools"])}
        run: dict[str, Any] = {
            "id": rec.id,
            "trace_id": root.id,
            "dotted_order": dotted,
            "parent_run_id": rec.parent.id if rec.parent is not None else None,
            "start_time": rec.start,
            "end_time": rec.end,
            "outputs": outputs,
            "error": mask.text(rec.error) if rec.error else None,
            "extra": extra,
            "tags": sorted(set(rec.tags) | set(self.tags or ())),
        }
        if rec.serialized:
            run["serialized"] = rec.serialized
        self.client.create_run(
            rec.name, inputs, cast(Any, rec.run_type), project_name=self.project_name, **run
        )
