"""Shared data shapes: the agent state (persisted in checkpoints) and the run result.

Everything here is plain data (TypedDicts and dataclasses) so it serializes into LangGraph
checkpoints unchanged. Field and key names are persisted: renaming one needs a migration note.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal, NotRequired, TypeVar

from langchain_core.messages import AnyMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.graph.message import _messages_delta_reducer
from typing_extensions import TypedDict

__all__ = [
    "CONTROL_KEYS",
    "RUN_KEYS",
    "AgentChannels",
    "AgentState",
    "ErrorKind",
    "ErrorRecord",
    "Limits",
    "Outcome",
    "RunBudget",
    "RunMetadata",
    "RunPolicy",
    "RunResult",
    "Signal",
    "TraceStep",
    "UsageTotals",
    "add_usage",
    "extend",
    "flat",
    "fold",
    "folded_write",
    "is_model_call",
    "merge_keys",
    "model_calls_in",
    "replied",
]

ErrorKind = Literal["retryable", "degradable", "fatal"]
"""How a failure is handled: retry the same step, degrade (fallback), or stop cleanly."""

Signal = Literal[
    "answer",  # reason produced a final answer
    "tools",  # reason asked for tool calls
    "repair",  # reason produced malformed output; try again with a hint
    "retry",  # the model call failed retryably; try again after backoff
    "degrade",  # give up on the normal path: go to fallback
    "downgrade",  # fallback switched to another model tier: reason again
    "continue",  # observe: go on reasoning
]
"""What the last node decided; the graph's conditional edges route on it."""


class ErrorRecord(TypedDict):
    """One failure, as it is kept in the state (and so in the checkpoint)."""

    node: str
    code: str
    kind: ErrorKind
    message: str
    iteration: int
    attempt: int


class UsageTotals(TypedDict):
    """Running totals of model usage for one run."""

    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_usd: float
    model_calls: int
    cached_tokens: NotRequired[int]
    """Prompt tokens the provider served from its prompt cache (priced apart)."""


def add_usage(left: UsageTotals | None, right: UsageTotals | None) -> UsageTotals:
    """Reducer: usage totals add up across nodes and across resumes."""
    zero = UsageTotals(input_tokens=0, output_tokens=0, total_tokens=0, cost_usd=0.0, model_calls=0)
    a, b = left or zero, right or zero
    return UsageTotals(
        input_tokens=a["input_tokens"] + b["input_tokens"],
        output_tokens=a["output_tokens"] + b["output_tokens"],
        total_tokens=a["total_tokens"] + b["total_tokens"],
        cost_usd=round(a["cost_usd"] + b["cost_usd"], 10),
        model_calls=a["model_calls"] + b["model_calls"],
        cached_tokens=a.get("cached_tokens", 0) + b.get("cached_tokens", 0),
    )


class TraceStep(TypedDict, total=False):
    """One visible step of a run: what a node did, how long it took, what it cost."""

    run_id: str | None
    iteration: int
    node: str
    thought: str | None
    action: str | None
    action_input: Any
    observation: str | None
    ms: float
    tokens: int
    cost: float
    attempt: int
    signal: str
    error_code: str | None


class Limits(TypedDict):
    """Per-run limits, copied into the state at start so a resumed run keeps its own."""

    max_iterations: int
    max_model_attempts: int
    max_repairs: int
    max_tool_attempts: NotRequired[int]
    tool_timeout_s: float
    iteration_timeout_s: float
    model_timeout_s: float
    run_timeout_s: float


class RunBudget(TypedDict):
    """Per-run spending limits (None: unlimited), copied into the state at start."""

    usd: float | None
    tokens: int | None
    model_calls: int | None


class RunPolicy(TypedDict):
    """The tool policy a run started with, copied into the state at start so a resume, an
    approval or a fork from a process configured differently keeps the run's own policy."""

    tools: list[str]
    """The tools the run may call."""
    approval: list[str]
    """The tools whose every call waits for a human's approval."""


class Outcome(TypedDict):
    """How the run ended (set by `finish`)."""

    success: bool
    output: str
    error: str | None
    error_code: str | None
    degraded: NotRequired[bool]
    """True when the answer is the fallback's tool-free direct answer (a success, but not
    the normal path); absent in checkpoints written before it existed: False."""


T = TypeVar("T")

SNAPSHOT_EVERY = 100
"""A growing list's full value is stored once every this many updates; the checkpoints
between store only what each step added (LangGraph's `DeltaChannel`), so a turn's storage
does not grow with the conversation. Reading a state replays at most this many writes."""


def extend(state: list[T], writes: Sequence[list[T]]) -> list[T]:
    """Batch reducer of a `DeltaChannel` list: `state` followed by every write's items, as
    `operator.add` applied write by write (so replaying writes in any batches agrees)."""
    out = list(state)
    for items in writes:
        out.extend(items)
    return out


def _latest(state: Any, writes: Sequence[Any]) -> Any:
    return writes[-1] if writes else state


class StoredWhenChanged(DeltaChannel[Any]):
    """A last-value channel stored only in the checkpoint where its value changes (SQLite
    otherwise copies every value into every checkpoint). For a value that can be large and
    is written by every run, so reading a state never walks back further than the run."""

    def __init__(self, reducer: Any = None, typ: Any = None, *, snapshot_frequency: int = 1):
        super().__init__(_latest, snapshot_frequency=1)
        self.typ = type(None)  # the value before any write, and of a stored None: None


class AgentState(TypedDict, total=False):
    """The agent graph's state.

    It lives here rather than in `graphs/` because nodes need its type and nodes may not
    import graphs; `graphs` re-exports it.
    """

    messages: Annotated[
        list[AnyMessage], DeltaChannel(_messages_delta_reducer, snapshot_frequency=SNAPSHOT_EVERY)
    ]
    """The conversation (`add_messages` semantics: appended, or replaced/removed by id)."""
    question: str
    run_id: str
    model_spec: str
    """The model the run started with; `resume` continues with the same one."""
    limits: Limits
    policy: RunPolicy
    """Which tools the run may call and which need approval (absent in checkpoints written
    before it existed: those runs follow the current settings)."""
    deadline: float
    """Absolute epoch seconds after which the run degrades; survives resume."""
    iteration: int
    """Completed reason→act→observe cycles."""
    iteration_deadline: float
    model_attempt: int
    """Consecutive failed model calls in the current step."""
    retry_delay_s: float | None
    """The wait chosen before the next model or tool retry (backoff or `Retry-After`)."""
    tool_retry: dict[str, str] | None
    """Tool calls to run again after a transient failure: call id → id of the error message
    the new result replaces."""
    tool_attempt: int
    """Consecutive tool retries in the current cycle."""
    tried_tiers: list[str]
    """Tiers the degradation chain has used up in this run (failed, or already switched to):
    each tier is switched to at most once, so the chain always ends."""
    repair_attempt: int
    """Consecutive malformed outputs in the current step."""
    signal: Signal
    repair_hint: str | None
    """Why the last output was rejected, shown to the model on the repair pass."""
    rejected_output: str | None
    answer: str | None
    """The final answer, once `reason` has one."""
    fatal_error: ErrorRecord | None
    errors: Annotated[list[ErrorRecord], operator.add]
    """Kept whole: it rarely changes, and a `DeltaChannel` that goes unchanged makes every
    state read walk back to its last snapshot."""
    usage: Annotated[UsageTotals, add_usage]
    trace: Annotated[list[TraceStep], DeltaChannel(extend, snapshot_frequency=SNAPSHOT_EVERY)]
    outcome: Outcome
    tenant: str
    """Who the run is for: scopes budgets and cache keys (`default` when not given)."""
    tier: str | None
    """The active model tier (`simple` / `standard` / `complex`); None until routed."""
    budget: RunBudget
    context_summary: Annotated[str | None, StoredWhenChanged()]
    """Summary of the compacted middle of the history (see `nodes._compaction`)."""
    summary_upto: int
    """How many leading history messages `context_summary` covers."""


RUN_KEYS = frozenset({"model_spec", "limits", "policy", "budget", "deadline"})
"""`AgentState` keys stored together in the `run` channel: set when a run starts, rarely
changed after (`deadline` when a resume or fork gives the run a new one)."""
CONTROL_KEYS = frozenset(
    {
        "iteration",
        "iteration_deadline",
        "model_attempt",
        "retry_delay_s",
        "tool_retry",
        "tool_attempt",
        "tried_tiers",
        "repair_attempt",
        "repair_hint",
        "rejected_output",
        "summary_upto",
    }
)
"""`AgentState` keys stored together in the `control` channel: the loop's counters,
deadlines and repair notes."""
_FOLDED = RUN_KEYS | CONTROL_KEYS


def merge_keys(left: dict[str, Any] | None, right: dict[str, Any]) -> dict[str, Any]:
    """Reducer of `run` and `control`: the keys a write names replace theirs, the rest stay."""
    return {**left, **right} if left else dict(right)


class AgentChannels(TypedDict, total=False):
    """The agent graph's channels: `AgentState` with the keys of `RUN_KEYS` and
    `CONTROL_KEYS` held in two channels, `run` and `control`. LangGraph visits every
    channel at every step, so 16 keys that change together or rarely cost less as two
    (issue 19). Nodes, the runtime and every reader of a state see `AgentState`, flat: the
    graph folds what goes in (`fold`) and flattens what comes out (`flat`). Every other key
    is `AgentState`'s, stored as before."""

    messages: Annotated[
        list[AnyMessage], DeltaChannel(_messages_delta_reducer, snapshot_frequency=SNAPSHOT_EVERY)
    ]
    question: str
    run_id: str
    signal: Signal
    answer: str | None
    fatal_error: ErrorRecord | None
    errors: Annotated[list[ErrorRecord], operator.add]
    usage: Annotated[UsageTotals, add_usage]
    trace: Annotated[list[TraceStep], DeltaChannel(extend, snapshot_frequency=SNAPSHOT_EVERY)]
    outcome: Outcome
    tenant: str
    tier: str | None
    context_summary: Annotated[str | None, StoredWhenChanged()]
    run: Annotated[dict[str, Any], merge_keys]
    """`RUN_KEYS`: model_spec, limits, policy, budget, deadline."""
    control: Annotated[dict[str, Any], merge_keys]
    """`CONTROL_KEYS`: the iteration and its deadline, the attempt counters, the pending
    retries, the tiers tried, the repair note and the summary's extent."""


def fold(update: Mapping[str, Any]) -> dict[str, Any]:
    """A flat update (`AgentState` keys) as the channels take it: the keys of `RUN_KEYS`
    and `CONTROL_KEYS` moved into `run` and `control`."""
    if _FOLDED.isdisjoint(update):
        return dict(update)
    out: dict[str, Any] = {}
    run: dict[str, Any] = {}
    control: dict[str, Any] = {}
    for key, value in update.items():
        if key in RUN_KEYS:
            run[key] = value
        elif key in CONTROL_KEYS:
            control[key] = value
        else:
            out[key] = value
    if run:
        out["run"] = {**out.get("run", {}), **run}
    if control:
        out["control"] = {**out.get("control", {}), **control}
    return out


def flat(values: Mapping[str, Any]) -> dict[str, Any]:
    """The channels' values as `AgentState`: `run` and `control` spread back into their keys
    (values without them, such as a state written before they existed, as they are)."""
    run, control = values.get("run"), values.get("control")
    if run is None and control is None:
        return values if isinstance(values, dict) else dict(values)
    out = {k: v for k, v in values.items() if k != "run" and k != "control"}
    if run:
        out.update(run)
    if control:
        out.update(control)
    return out


def folded_write(channel: str, value: Any) -> tuple[str, Any]:
    """A write to a key `AgentState` keeps in `run` or `control` (as an older Keel stored it,
    one key per channel) as a write to that channel; any other write as it is."""
    if channel in RUN_KEYS:
        return "run", {channel: value}
    if channel in CONTROL_KEYS:
        return "control", {channel: value}
    return channel, value


_REPLY_SIGNALS = frozenset({"answer", "tools", "repair", "compose", "direct_answer", "compact"})
"""A trace row with one of these signals stands for one model reply."""
_MODEL_NODES = frozenset({"reason", "route", "fallback"})
_SENT_FAILURES = frozenset(
    {
        "model_error",
        "model_timeout",
        "model_rate_limited",
        "model_unavailable",
        "model_rejected",
        "context_too_long",
        "output_truncated",
    }
)
"""Error codes of a model call that reached the provider and failed (it counts as a call);
a breaker, a rate limiter, a budget or a deadline refuse a call before it is sent."""


def is_model_call(row: Mapping[str, Any]) -> bool:
    """Whether one trace row stands for a model call (replied, or sent and failed)."""
    if row.get("node") not in _MODEL_NODES:
        return False
    signal = row.get("signal")
    if signal in _REPLY_SIGNALS or int(row.get("tokens") or 0) > 0:
        return True
    return signal in ("retry", "degrade") and row.get("error_code") in _SENT_FAILURES


def model_calls_in(rows: Iterable[Mapping[str, Any]]) -> int:
    """The model calls a run's trace rows stand for: each reply (answer, tool request,
    repair, compose draft, compaction, the fallback's direct answer) and each call that
    reached the provider and failed. Routing rows, budget and deadline refusals, and
    tier switches are not calls."""
    return sum(1 for row in rows if is_model_call(row))


def replied(row: Mapping[str, Any]) -> bool:
    """Whether a model-call row's call came back with a reply (else it failed)."""
    return row.get("signal") in _REPLY_SIGNALS or int(row.get("tokens") or 0) > 0


@dataclass(frozen=True)
class RunMetadata:
    """What a run did and cost: `RunResult.metadata` (its JSON keys are the field names)."""

    run_id: str | None = None
    model: str | None = None
    mode: str | None = None
    tenant: str = "default"
    tier: str | None = None
    iterations: int = 0
    model_calls: int = 0
    total_tokens: int = 0
    total_cost: float = 0.0
    execution_time: float = 0.0
    """Seconds this call took (a resume counts only its own part)."""
    error_code: str | None = None
    trace: list[dict[str, Any]] = field(default_factory=list)
    """The run's visible steps (`TraceStep` fields)."""
    pending: list[dict[str, Any]] = field(default_factory=list)
    """Review requests waiting for a human (empty unless the run is interrupted)."""
    cache: Literal["hit"] | None = None
    """`hit` when the answer came from the whole-run cache (then nothing ran)."""
    cached_from_run: str | None = None
    """The run whose answer a cache hit served."""

    @staticmethod
    def calls_in(rows: Iterable[Mapping[str, Any]]) -> int:
        """`model_calls` of a run whose trace rows are `rows` (see `model_calls_in`)."""
        return model_calls_in(rows)

    def to_dict(self) -> dict[str, Any]:
        """As JSON: every field, except the cache fields of a run that was not a hit."""
        out = asdict(self)
        for key in ("cache", "cached_from_run"):
            if out[key] is None:
                del out[key]
        return out


@dataclass
class RunResult:
    """What `keel run` / `Agent.arun` return (and `--json` prints)."""

    output: str
    success: bool
    error: str | None
    thread_id: str
    metadata: RunMetadata = field(default_factory=RunMetadata)
    error_code: str | None = None
    status: Literal["finished", "interrupted"] = "finished"
    degraded: bool = False
    """The run succeeded on the degraded path: the fallback answered without tools after
    the normal path failed (`success` is True, the answer may be weaker)."""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "metadata": self.metadata.to_dict()}
