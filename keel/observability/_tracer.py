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

It is a `LangChainTracer` only by type: LangChain adds its own tracer to any run whose
callbacks hold none when `LANGSMITH_TRACING` is set, which would send every run twice.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID, uuid5

import orjson
from langchain_core.env import get_runtime_environment
from langchain_core.load import Serializable, dumpd
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult
from langchain_core.tracers.langchain import LangChainTracer
from langsmith.run_helpers import get_tracing_context
from pydantic import BaseModel

from keel.observability.events import RUN_MARKS
from keel.observability.redact import MASK, json_may_hold_secret, redact
from keel.observability.tracing import TracePolicy

__all__ = ["KeelTracer"]

HIDDEN = "langsmith:hidden"
_ROOT_LIGHT_INPUTS = ("question", "tenant", "run_id")
_ROOT_LIGHT_OUTPUTS = ("outcome", "usage", "answer", "tier", "errors")
_NODE_LIGHT_INPUTS = ("iteration", "signal", "model_attempt", "repair_attempt", "tier")
_MAX_DEPTH = 32
"""Nesting followed when masking (as `redact`); anything deeper is masked whole."""
_MESSAGE_DEPTH = 3
"""A message's depth in a model run's inputs: `{"messages": [[message, …]]}`."""

_log = logging.getLogger(__name__)
_LOGGED: set[str] = set()


def _log_once(what: str, exc: Exception) -> None:
    if what not in _LOGGED:
        _LOGGED.add(what)
        _log.warning("LangSmith trace not sent (%s): %r", what, exc)


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

    def payload(self, value: Any, depth: int = 0) -> Any:
        """`value` masked, or `value` itself when its JSON shows nothing `redact` could mask
        (`json_may_hold_secret`): one serialisation in C instead of a walk in Python over
        every key and string. Anything orjson does not serialise natively is walked."""
        try:
            text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:
            return self(value, depth)
        return self(value, depth) if json_may_hold_secret(text.decode()) else value


class _Dumper:
    """Messages as LangChain serialises them (`dumpd`), masked, once per message of a trace:
    every later model run's prompt repeats it, and a model's reply is the next prompt's
    last message (the messages live as long as the trace, so their ids stay theirs)."""

    def __init__(self, mask: _Masker) -> None:
        self.mask = mask
        self._done: dict[int, Any] = {}

    def __call__(self, message: Any, depth: int = _MESSAGE_DEPTH) -> Any:
        """Masked at the depth a message has in a model run's inputs (`{"messages":
        [[message]]}`), so the result is what masking those inputs whole would give."""
        key = id(message)
        found = self._done.get(key)
        if found is None:
            found = self._done[key] = self._dump(message, depth)
        return found

    def _dump(self, message: Any, depth: int) -> Any:
        data = _plain_dumpd(message)
        if data is not None:
            try:
                text = orjson.dumps(data).decode()
            except TypeError:  # not plain JSON data: dumpd's own conversions apply
                data = None
            else:
                if text.count('"lc":') == 1:  # no user dict dumpd would escape
                    return self.mask(data, depth) if json_may_hold_secret(text) else data
        return self.mask.payload(dumpd(message), depth)


_Field = tuple[str, bool, Any, Any]
_Plan = tuple[list[str], tuple[_Field, ...], tuple[Any, ...]]
_PLANS: dict[type, _Plan | None] = {}


def _plan(cls: type) -> _Plan | None:
    """How `Serializable.to_json` builds a message class's constructor arguments: its id;
    per field (name, required, default factory, default); the `lc_attributes` properties
    added after them, most derived first. None for a class that declares secrets or
    serialises itself (then `dumpd` is used)."""
    if cls in _PLANS:
        return _PLANS[cls]
    plan: _Plan | None = None
    if issubclass(cls, BaseMessage) and cls.is_lc_serializable():
        own = cls.__mro__[: cls.__mro__.index(Serializable)]
        if not any("lc_secrets" in c.__dict__ or "to_json" in c.__dict__ for c in own):
            fields = []
            for name, f in cls.model_fields.items():
                if f.exclude:
                    continue
                factory = f.default_factory if f.default_factory in (dict, list) else None
                default = None if f.default_factory is not None else f.get_default()
                fields.append((name, f.is_required(), factory, default))
            attributes = tuple(
                c.__dict__["lc_attributes"] for c in own if "lc_attributes" in c.__dict__
            )
            plan = (list(cls.lc_id()), tuple(fields), attributes)
    _PLANS[cls] = plan
    return plan


def _plain_dumpd(message: Any) -> dict[str, Any] | None:
    """`dumpd(message)` for a message class that serialises the standard way, by
    `to_json`'s rule (a field is sent when required, truthy, or unlike its default; then
    the class's `lc_attributes`), without its per-field introspection; None when `dumpd`
    itself must be used."""
    plan = _plan(type(message))
    if plan is None:
        return None
    lc_id, fields, attributes = plan
    kwargs: dict[str, Any] = {}
    for name, required, factory, default in fields:
        value = getattr(message, name)
        if required or value:
            kwargs[name] = value
        elif factory is not None and isinstance(value, factory):
            continue
        elif value is not default and value != default:
            kwargs[name] = value
    for attribute in attributes:
        kwargs.update(attribute.__get__(message))
    return {"lc": 1, "type": "constructor", "id": lc_id, "kwargs": kwargs}


def _tool_names(tools: Any) -> list[str]:
    """The bound tools by name (light payloads: every model run would repeat the schemas)."""
    names = []
    for t in tools if isinstance(tools, list | tuple) else ():
        function = t.get("function") if isinstance(t, Mapping) else None
        name = function.get("name") if isinstance(function, Mapping) else None
        names.append(str(name) if name is not None else "?")
    return names


def _llm_outputs(response: LLMResult, dump: _Dumper) -> dict[str, Any]:
    """What LangChain's tracer sends for a model's reply (`LLMResult.model_dump()` with each
    message serialised as `dumpd` does), built without dumping the messages twice."""
    generations = []
    for batch in response.generations:
        row = []
        for g in batch:
            item: dict[str, Any] = {
                "text": g.text,
                "generation_info": g.generation_info,
                "type": g.type,
            }
            message = getattr(g, "message", None)
            if message is not None:
                item["message"] = dump(message, 4)  # {"generations": [[{"message": …}]]}
            row.append(item)
        generations.append(row)
    return {
        "generations": generations,
        "llm_output": response.llm_output,
        "run": None,
        "type": "LLMResult",
    }


def _usage(response: LLMResult) -> tuple[dict[str, Any] | None, int]:
    """The reply's token usage (summed over its messages) and how many tool calls it makes."""
    usage: dict[str, Any] | None = None
    calls = 0
    for batch in response.generations:
        for g in batch:
            message = getattr(g, "message", None)
            calls += len(getattr(message, "tool_calls", None) or ())
            found = getattr(message, "usage_metadata", None)
            if isinstance(found, Mapping):
                if usage is None:
                    usage = dict(found)
                else:
                    for k, v in found.items():
                        if isinstance(v, int) and isinstance(usage.get(k), int):
                            usage[k] += v
    return usage, calls


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
        return _pick(inputs, _ROOT_LIGHT_INPUTS if root else _NODE_LIGHT_INPUTS)

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
        reasons = self._decorate(root)
        if not self.policy.keep(reasons):
            return
        self._add_tool_runs(root)
        light = self.policy.payloads == "light"
        if light:
            self._prune_hidden(root)
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

    def _decorate(self, root: _Rec) -> set[str]:
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

    @staticmethod
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

    @staticmethod
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
