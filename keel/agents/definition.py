"""`keel.Agent`: an agent definition, a frozen value that compiles to Keel's agent graph.

```python
import keel

support = keel.Agent(
    name="support",
    instructions="You answer questions about orders. Look facts up with the tools.",
    tools=[lookup_order, keel.calculator],
    model="openai:gpt-4o-mini",
    limits=keel.Limits(max_iterations=4),
    budget=keel.Budget(usd=0.05),
    approval=["refund"],
)
await support.graph.ainvoke({"messages": [("user", "Where is order 42?")]})
async with keel.open_agent(support) as agent:      # Keel's runtime: checkpoints, approvals…
    result = await agent.arun("Where is order 42?")
```
Every field left `None` takes its value from the settings (`KEEL_*`), when the agent runs.
`agent.graph` works wherever a LangGraph graph works (`ainvoke` / `astream`, a node or
subgraph of your own `StateGraph`, `langgraph.json`): the run context is built from the
definition when the caller passes none.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.config import get_config
from langgraph.constants import CONFIG_KEY_CHECKPOINTER
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from keel.agents.context import build_context
from keel.checkpoints.adopt import adopt
from keel.config import TIER_NAMES, LimitSettings, Settings, TierSettings, load_settings
from keel.errors import UsageError
from keel.graphs import build_agent_graph
from keel.nodes import AgentContext
from keel.tools import default_tools
from keel.tools.registry import Tool, ToolRegistry, tool

__all__ = ["CONFIG_KEYS", "Agent", "Budget", "Limits"]

Limits = LimitSettings
"""Per-run limits (iterations, attempts, timeouts): `keel.Limits(max_iterations=4)`. The
fields you set replace the settings' (`KEEL_LIMITS__*`); the others keep them."""


class Budget(BaseModel):
    """Per-run spending limits. The fields you set replace the settings'
    (`KEEL_COST__RUN_USD`, `…_RUN_TOKENS`, `…_RUN_MODEL_CALLS`); `None` set explicitly
    means no limit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    usd: float | None = Field(None, ge=0)
    """USD one run may spend on model calls."""
    tokens: int | None = Field(None, ge=1)
    """Tokens (prompt + completion) one run may use."""
    model_calls: int | None = Field(None, ge=1)
    """Model calls one run may make."""


CONFIG_KEYS = ("model", "instructions", "tools", "limits", "budget", "approval")
"""What an assistant's `config` / `context` may set on a Keel agent (`Agent.with_config`)."""

_BUDGET_SETTINGS = {"usd": "run_usd", "tokens": "run_tokens", "model_calls": "run_model_calls"}


@dataclass(frozen=True, kw_only=True)
class Agent:
    """An agent definition: what it is told, what it may use, and its bounds.

    Frozen: `with_config` / `dataclasses.replace` make changed copies. The definition holds
    no open resources; the run context (models, caches, breakers) is built when it runs.
    """

    name: str
    """The graph id: the name in `langgraph.json`, the service's assistants and
    `keel run --agent NAME`."""
    instructions: str | None = None
    """The system prompt. None: Keel's built-in data-assistant prompt. When `sql_query` is
    among the tools, the database's schema and rules are appended either way."""
    tools: Sequence[Tool] | None = None
    """The tools the model may call (`@keel.tool` functions; a plain function is wrapped
    with `keel.tool`). None: the built-in `sql_query` and `calculator`."""
    model: str | None = None
    """Model spec, `<provider>:<name>` (`openai:gpt-4o-mini`, `local:…`, `scripted:…`).
    None: the settings' `KEEL_MODEL`."""
    tiers: Mapping[str, str] | None = None
    """Model specs by tier (`simple` / `standard` / `complex`) for the router. None: the
    settings' `KEEL_MODEL_TIERS__*`; `standard` defaults to `model`."""
    limits: Limits | None = None
    """Per-run limits. None: the settings' `KEEL_LIMITS__*`."""
    budget: Budget | None = None
    """Per-run budget (USD, tokens, model calls). None: the settings' `KEEL_COST__RUN_*`."""
    approval: Sequence[str] | None = None
    """Names of tools whose every call waits for a human (approve, edit or reject), besides
    tools declaring `requires_approval`. None: the settings' `KEEL_APPROVAL_TOOLS`."""
    description: str = ""
    """What the agent is for (shown by `keel agents` and the assistants API)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise UsageError("keel.Agent needs a name (the graph id), e.g. name='support'")
        if self.tools is not None:
            object.__setattr__(self, "tools", tuple(_as_tool(t, self.name) for t in self.tools))
        if self.approval is not None:
            if isinstance(self.approval, str):
                raise UsageError(f"agent '{self.name}': approval is a list of tool names")
            object.__setattr__(self, "approval", tuple(self.approval))
            unknown = sorted(set(self.approval) - set(self.registry().names()))
            if unknown:
                raise UsageError(
                    f"agent '{self.name}': approval names unknown tools {unknown}; its tools "
                    f"are {self.registry().names()}"
                )
        if self.tiers is not None:
            object.__setattr__(self, "tiers", dict(self.tiers))
        try:
            if self.model is not None:
                TierSettings(standard=self.model)
            if self.tiers is not None:
                TierSettings(**self.tiers)
        except (ValidationError, TypeError) as exc:
            raise UsageError(f"agent '{self.name}': bad model spec or tier: {exc}") from exc
        if self.tiers is not None and set(self.tiers) - set(TIER_NAMES):
            raise UsageError(
                f"agent '{self.name}': unknown tiers {sorted(set(self.tiers) - set(TIER_NAMES))}"
                f"; tiers are {list(TIER_NAMES)}"
            )
        if self.limits is not None and not isinstance(self.limits, LimitSettings):
            raise UsageError(f"agent '{self.name}': limits must be a keel.Limits")
        if self.budget is not None and not isinstance(self.budget, Budget):
            raise UsageError(f"agent '{self.name}': budget must be a keel.Budget")

    # ------------------------------------------------------------------ what it resolves to
    def registry(self) -> ToolRegistry:
        """A new registry with the agent's tools."""
        return ToolRegistry.of(self.tools) if self.tools is not None else default_tools()

    def settings_for(self, base: Settings) -> Settings:
        """`base` with the fields this definition sets (model, tiers, limits, budget,
        approval); every field it leaves None keeps the settings' value."""
        update: dict[str, Any] = {}
        if self.model is not None:
            update["model"] = self.model
        if self.tiers is not None:
            update["model_tiers"] = TierSettings(**self.tiers)
        if self.limits is not None:
            update["limits"] = base.limits.model_copy(
                update=self.limits.model_dump(exclude_unset=True)
            )
        if self.budget is not None:
            chosen = self.budget.model_dump(exclude_unset=True)
            update["cost"] = base.cost.model_copy(
                update={_BUDGET_SETTINGS[k]: v for k, v in chosen.items()}
            )
        if self.approval is not None:
            update["approval_tools"] = tuple(self.approval)
        return base.model_copy(update=update) if update else base

    async def build_context(self, settings: Settings | None = None, **options: Any) -> AgentContext:
        """The run context for this definition over `settings` (`options` as for
        `keel.runtime.build_context`: model, tier_models, progress, caches)."""
        tools = options.pop("tools", None)
        return await build_context(
            self.settings_for(settings or load_settings()),
            tools=self.registry() if tools is None else tools,
            instructions=self.instructions,
            **options,
        )

    # ------------------------------------------------------------------ the graph
    @cached_property
    def graph(self) -> CompiledStateGraph[Any, Any, Any, Any]:
        """The compiled graph, without a checkpointer (a parent graph's is used when it is a
        subgraph). Settings are read from the environment on its first run."""
        return self.compile()

    def compile(
        self,
        checkpointer: BaseCheckpointSaver[Any] | None = None,
        *,
        settings: Settings | None = None,
        model: BaseChatModel | None = None,
    ) -> CompiledStateGraph[Any, Any, Any, Any]:
        """The agent graph compiled with `checkpointer`. A run given no `context=` gets one
        built from this definition over `settings` (the environment's when None), once per
        event loop. Its side-effecting tools are journaled in the database of the saver the
        run is checkpointed in (this one, or a parent graph's) when Keel knows the kind
        (memory, SQLite, Postgres); under another saver they run unjournaled. `model`: a
        chat model object instead of the definition's model spec (tests: a scripted model)."""
        holder = _Contexts(self, settings, model)
        return build_agent_graph(holder.get).compile(checkpointer=checkpointer, name=self.name)

    # ------------------------------------------------------------------ assistants
    def with_config(self, config: Mapping[str, Any]) -> Agent:
        """This definition with an assistant's `config` / `context` applied.

        Keys: `model`, `instructions`, `tools` (names: a subset of the agent's tools),
        `limits` and `budget` (mappings of their fields), `approval` (tool names). A LangGraph
        `{"configurable": {...}}` is read the same way. Any other key, or a value that does
        not apply, raises `UsageError` naming the field.
        """
        if not isinstance(config, Mapping):
            raise UsageError("config must be a JSON object")
        flat = dict(config)
        inner = flat.pop("configurable", None)
        if inner is not None:
            if not isinstance(inner, Mapping):
                raise UsageError("config.configurable must be a JSON object")
            flat.update(inner)
        unknown = sorted(set(flat) - set(CONFIG_KEYS))
        if unknown:
            raise UsageError(
                f"agent '{self.name}' cannot apply config field(s) {unknown}; a Keel agent "
                f"takes {list(CONFIG_KEYS)}"
            )
        changes: dict[str, Any] = {}
        for key, value in flat.items():
            changes[key] = _APPLY[key](self, value)
        try:
            return replace(self, **changes)
        except UsageError as exc:
            raise UsageError(f"config: {exc.message}") from exc


class _Contexts:
    """The run context a compiled graph builds when it is given none: one per event loop
    (models, caches and breakers hold loop-bound connections), with the idempotency journal
    of the saver the run is checkpointed in (the graph's own, or a parent graph's)."""

    def __init__(
        self, agent: Agent, settings: Settings | None, model: BaseChatModel | None
    ) -> None:
        self.agent, self.settings, self.model = agent, settings, model
        self.built: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Built] = (
            weakref.WeakKeyDictionary()
        )

    async def get(self) -> AgentContext:
        loop = asyncio.get_running_loop()
        built = self.built.get(loop)
        if built is None:
            built = self.built.setdefault(loop, _Built(asyncio.Lock()))
        saver = _running_saver()
        for known, context in built.by_saver:
            if known is saver:
                return context
        async with built.lock:
            if built.base is None:
                built.base = await self.agent.build_context(self.settings, model=self.model)
            context = built.base
            if saver is not None:
                storage = await adopt(saver)
                context = replace(context, journal=storage.journal if storage else None)
            built.by_saver.append((saver, context))
        return context


@dataclass
class _Built:
    lock: asyncio.Lock
    base: AgentContext | None = None
    by_saver: list[tuple[Any, AgentContext]] = field(default_factory=list)
    """(saver, context with its journal); a process has few savers."""


def _running_saver() -> BaseCheckpointSaver[Any] | None:
    """The saver the current run is checkpointed in (a subgraph's is its parent's)."""
    try:
        saver = get_config().get("configurable", {}).get(CONFIG_KEY_CHECKPOINTER)
    except RuntimeError:
        return None
    return saver if isinstance(saver, BaseCheckpointSaver) else None


def _as_tool(value: Any, agent: str) -> Tool:
    if isinstance(value, Tool):
        return value
    if callable(value):
        return tool(value)
    raise UsageError(
        f"agent '{agent}': {value!r} is not a tool; decorate a function with @keel.tool"
    )


def _names(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise UsageError(f"config field '{key}' must be a list of tool names")
    names = tuple(value)
    if not all(isinstance(n, str) for n in names):
        raise UsageError(f"config field '{key}' must be a list of tool names")
    return names


def _apply_tools(agent: Agent, value: Any) -> tuple[Tool, ...]:
    wanted = _names(value, "tools")
    have = agent.registry()
    unknown = sorted(set(wanted) - set(have.names()))
    if unknown:
        raise UsageError(
            f"config field 'tools' names tools agent '{agent.name}' does not have: {unknown}; "
            f"it has {have.names()}"
        )
    return tuple(t for t in have if t.name in wanted)


def _apply_model(agent: Agent, value: Any, key: str) -> Any:
    if value is not None and not isinstance(value, str):
        raise UsageError(f"config field '{key}' must be a string")
    return value


def _apply_fields(
    kind: type[BaseModel], current: BaseModel | None, value: Any, key: str
) -> BaseModel:
    if not isinstance(value, Mapping):
        raise UsageError(f"config field '{key}' must be a JSON object")
    unknown = sorted(set(value) - set(kind.model_fields))
    if unknown:
        raise UsageError(
            f"config field '{key}' has unknown fields {unknown}; it takes {list(kind.model_fields)}"
        )
    merged = {**(current.model_dump(exclude_unset=True) if current else {}), **value}
    try:
        return kind.model_validate(merged)
    except ValidationError as exc:
        where = "; ".join(
            f"{key}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise UsageError(f"config field {where}") from exc


def _apply_approval(agent: Agent, value: Any) -> tuple[str, ...]:
    names = _names(value, "approval")
    unknown = sorted(set(names) - set(agent.registry().names()))
    if unknown:
        raise UsageError(f"config field 'approval' names unknown tools {unknown}")
    return names


_APPLY: dict[str, Callable[[Agent, Any], Any]] = {
    "model": lambda a, v: _apply_model(a, v, "model"),
    "instructions": lambda a, v: _apply_model(a, v, "instructions"),
    "tools": _apply_tools,
    "limits": lambda a, v: _apply_fields(LimitSettings, a.limits, v, "limits"),
    "budget": lambda a, v: _apply_fields(Budget, a.budget, v, "budget"),
    "approval": _apply_approval,
}
