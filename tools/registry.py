"""Tool definitions and the registry the agent draws them from.

A tool is a plain function (sync or async) whose signature becomes a pydantic schema:

```python
@tool(idempotent=True)
def calculator(expression: Annotated[str, Field(description="e.g. 2*(3+4)")]) -> str:
    "Evaluate an arithmetic expression."
```

Arguments are validated before the function runs; a validation failure is a
`ToolInputError` that the agent feeds back to the model. A parameter annotated
`ToolContext` is injected by the runtime and hidden from the model.

Side effects: a tool is non-idempotent unless it says `idempotent=True`. Non-idempotent calls
go through the idempotency journal (exactly once across crashes and resumes); such a tool
gets `ToolContext.idempotency_key` to hand to external systems, and may declare a
`reconcile(key)` hook that says what became of a call whose outcome was lost in a crash.
`requires_approval=True` makes every call wait for a human (approve, edit or reject).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import json
import re
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar, cast, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from keel.config import Settings
from keel.errors import ErrorCode, ToolDefinitionError, ToolInputError
from keel.resilience.isolation import check_importable, run_in_process, run_in_thread

__all__ = [
    "Reconcile",
    "Reconciled",
    "Tool",
    "ToolContext",
    "ToolRegistry",
    "is_tool_name",
    "tool",
]

_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
MEMO_SIZE = 32
T = TypeVar("T")


def is_tool_name(name: str) -> bool:
    """The rule OpenAI-style APIs enforce on function names (and so the registry's)."""
    return _TOOL_NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class Reconciled:
    """What a `reconcile(key)` hook found out about a call whose outcome was lost."""

    happened: bool | None
    """True: the effect took place; False: it did not (safe to run again); None: unknown."""
    result: str = ""
    """The call's result when it happened (what the model will see)."""

    @classmethod
    def done(cls, result: str) -> Reconciled:
        return cls(True, result)

    @classmethod
    def not_done(cls) -> Reconciled:
        return cls(False)

    @classmethod
    def unknown(cls) -> Reconciled:
        return cls(None)


Isolation = Literal["thread", "process", "inline"]
"""Where a sync tool runs (see `Tool.isolation`)."""
Reconcile = Callable[[str], "Reconciled | Awaitable[Reconciled]"]
"""`reconcile(idempotency_key)`: ask the external system whether the effect happened."""


@dataclass(frozen=True)
class ToolContext:
    """What the runtime hands a tool besides its arguments."""

    settings: Settings
    tool_call_id: str
    thread_id: str | None = None
    deadline: float | None = None
    """Absolute epoch seconds by which the call must be done."""
    tenant: str = "default"
    """The run's tenant: what the tool writes belongs to it (artifacts, for one)."""
    run_id: str | None = None

    @property
    def idempotency_key(self) -> str:
        """`thread_id:tool_call_id`: give it to external systems to make effects idempotent."""
        return self.key_for(self.thread_id, self.tool_call_id)

    @staticmethod
    def key_for(thread_id: str | None, tool_call_id: str) -> str:
        return f"{thread_id or '-'}:{tool_call_id}"


@dataclass(frozen=True)
class Tool:
    """A registered tool: its schema, its function and how the runtime must treat it."""

    name: str
    description: str
    args_schema: type[BaseModel]
    func: Callable[..., Any]
    context_param: str | None = None
    """Name of the parameter that receives the `ToolContext`, if any."""
    idempotent: bool = False
    """True only for calls that are safe to repeat; the rest go through the journal."""
    requires_approval: bool = False
    """A human must approve (or edit, or reject) each call before it runs."""
    reconcile: Reconcile | None = None
    """Decides the outcome of a call that started but whose completion was never recorded;
    without it such a call pauses the run for a human ("outcome unknown")."""
    transient: tuple[type[BaseException], ...] = ()
    """Exceptions that mean 'try again later' (retryable), not 'this cannot work'."""
    timeout_s: float | None = None
    """Overrides the run's tool timeout for this tool."""
    cacheable: bool = False
    """Results may be cached (pure functions of their arguments)."""
    isolation: Isolation = "thread"
    """Where a sync tool runs: a daemon thread (abandoned on timeout; it never delays exit),
    a separate process (killed on timeout; arguments and result must pickle), or `"inline"`
    on the event loop itself. A tool that can spend long in one C call holding the GIL
    (big-integer maths, a C library) freezes every thread, the event loop included, until
    the call returns: give it `"process"`. `"inline"` saves the hand-over to a thread and
    back (with many runs at once, a GIL hand-over each way) but nothing can time it out:
    only for a tool whose every call is brief and bounded by its own checks, with no I/O
    (`calculator`)."""

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    def validate(self, args: Any) -> BaseModel:
        """Check raw arguments from the model; raise `ToolInputError` naming each problem."""
        if not isinstance(args, dict):
            raise ToolInputError(
                f"arguments for '{self.name}' must be a JSON object, got {type(args).__name__}",
                code=ErrorCode.INVALID_TOOL_ARGS,
            )
        try:
            return self.args_schema.model_validate(args)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(arguments)'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ToolInputError(
                f"invalid arguments for '{self.name}': {problems}",
                code=ErrorCode.INVALID_TOOL_ARGS,
            ) from exc

    async def invoke(self, args: BaseModel, ctx: ToolContext) -> str:
        """Run the tool on validated arguments; sync tools run in a worker thread."""
        kwargs = {name: getattr(args, name) for name in type(args).model_fields}
        if self.isolation == "process":
            if self.context_param:
                kwargs[self.context_param] = ctx
            result = await run_in_process(self.func, kwargs)
            return result if isinstance(result, str) else json.dumps(result, default=str)
        if self.context_param:
            kwargs[self.context_param] = ctx
        if self.is_async:
            result = await self.func(**kwargs)
        elif self.isolation == "inline":
            result = self.func(**kwargs)
        else:
            result = await run_in_thread(self.func, kwargs, name=self.name)
        return result if isinstance(result, str) else json.dumps(result, default=str)

    def openai_schema(self) -> dict[str, Any]:
        """The tool as an OpenAI function definition (what `bind_tools` sends).

        Built once per (schema, name, description) — pydantic's JSON-schema generation was
        the largest cost of a model call — and handed out as a copy callers may change.
        The runtime reads the shared one instead (`ToolRegistry.openai_schemas`).
        """
        return copy.deepcopy(self.shared_schema())

    def shared_schema(self) -> dict[str, Any]:
        """`openai_schema()` without the copy: one object shared by every caller, which
        must not change it."""
        return _function_schema(self.args_schema, self.name, self.description)


@functools.lru_cache(maxsize=1024)
def _function_schema(args_schema: type[BaseModel], name: str, description: str) -> dict[str, Any]:
    params = args_schema.model_json_schema()
    params.pop("title", None)
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": params},
    }


def _build_tool(
    func: Callable[..., Any],
    *,
    name: str | None,
    description: str | None,
    **options: Any,
) -> Tool:
    tool_name = name or func.__name__
    doc = description or inspect.getdoc(func) or ""
    if options.get("isolation") == "process":
        check_importable(func, tool_name)
    if not doc:
        raise ToolDefinitionError(f"tool '{tool_name}' needs a description (docstring)")
    try:
        hints = get_type_hints(func, include_extras=True)
    except Exception as exc:
        raise ToolDefinitionError(f"tool '{tool_name}': cannot resolve type hints: {exc}") from exc
    fields: dict[str, Any] = {}
    context_param = None
    for param in inspect.signature(func).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolDefinitionError(f"tool '{tool_name}': *args/**kwargs are not supported")
        annotation = hints.get(param.name)
        if annotation is None:
            raise ToolDefinitionError(f"tool '{tool_name}': parameter '{param.name}' needs a type")
        if annotation is ToolContext:
            context_param = param.name
            continue
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, default)
    schema = create_model(
        f"{tool_name}_arguments",
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )
    return Tool(
        name=tool_name,
        description=doc.strip().split("\n\n")[0].replace("\n", " "),
        args_schema=schema,
        func=func,
        context_param=context_param,
        **options,
    )


@overload
def tool(func: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    idempotent: bool = False,
    requires_approval: bool = False,
    reconcile: Reconcile | None = None,
    transient: tuple[type[BaseException], ...] = (),
    timeout_s: float | None = None,
    cacheable: bool = False,
    isolation: Isolation = "thread",
) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    idempotent: bool = False,
    requires_approval: bool = False,
    reconcile: Reconcile | None = None,
    transient: tuple[type[BaseException], ...] = (),
    timeout_s: float | None = None,
    cacheable: bool = False,
    isolation: Isolation = "thread",
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a function into a `Tool` (use bare or with options)."""

    def wrap(f: Callable[..., Any]) -> Tool:
        return _build_tool(
            f,
            name=name,
            description=description,
            idempotent=idempotent,
            requires_approval=requires_approval,
            reconcile=reconcile,
            transient=transient,
            timeout_s=timeout_s,
            cacheable=cacheable,
            isolation=isolation,
        )

    return wrap(func) if func is not None else wrap


@dataclass(frozen=True)
class _Derived:
    """What a registry computes from its tools, once per tool set (see `ToolRegistry`)."""

    schemas: tuple[dict[str, Any], ...]
    version: str
    schema_chars: int


@dataclass
class ToolRegistry:
    """The tools one agent may use, by name. Registration order is kept.

    The schemas, their size and the version are computed once per tool set, not per model
    call or run: `register` is the only way in, and it drops them.
    """

    _tools: dict[str, Tool] = field(default_factory=dict)
    _derived: _Derived | None = field(default=None, init=False, repr=False, compare=False)
    _memo: dict[Hashable, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, tools: Iterable[Tool]) -> ToolRegistry:
        registry = cls()
        for t in tools:
            registry.register(t)
        return registry

    def register(self, t: Tool) -> Tool:
        if not is_tool_name(t.name):
            raise ToolDefinitionError(
                f"tool name '{t.name}' must be 1-64 ASCII letters, digits, _ or -"
            )
        if t.name in self._tools:
            raise ToolDefinitionError(f"a tool named '{t.name}' is already registered")
        self._tools[t.name] = t
        self._derived = None
        self._memo.clear()
        return t

    def memo(self, key: Hashable, make: Callable[[], T]) -> T:
        """`make()`, computed once per `key` for this tool set: what callers derive from the
        tools (a model with them bound, instructions listing them). At most `MEMO_SIZE`
        entries, the oldest dropped first; registering a tool drops them all."""
        try:
            return cast(T, self._memo[key])
        except KeyError:
            pass
        value = make()
        if len(self._memo) >= MEMO_SIZE:
            del self._memo[next(iter(self._memo))]
        self._memo[key] = value
        return value

    def tool(self, func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """Decorator: define a tool and register it here in one step."""
        if func is not None:
            return self.register(tool(func))
        return lambda f: self.register(tool(**options)(f))

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return list(self._tools)

    def requiring_approval(self, names: Iterable[str]) -> ToolRegistry:
        """A registry where the named tools also need a human's approval per call."""
        wanted = set(names)
        return ToolRegistry(
            {
                n: replace(t, requires_approval=True) if n in wanted else t
                for n, t in self._tools.items()
            }
        )

    def subset(self, names: Iterable[str]) -> ToolRegistry:
        """A registry with only the named tools (unknown names are ignored)."""
        wanted = set(names)
        return ToolRegistry({n: t for n, t in self._tools.items() if n in wanted})

    def _derive(self) -> _Derived:
        derived = self._derived
        if derived is None or len(derived.schemas) != len(self._tools):
            schemas = tuple(t.shared_schema() for t in self)
            blob = json.dumps(schemas, sort_keys=True)
            derived = _Derived(
                schemas=schemas,
                version=hashlib.sha256(blob.encode()).hexdigest()[:12],
                schema_chars=sum(len(json.dumps(s, default=str)) for s in schemas),
            )
            self._derived = derived
        return derived

    def openai_schemas(self) -> tuple[dict[str, Any], ...]:
        """Every tool's OpenAI function definition, in order: shared, not to be changed
        (`Tool.openai_schema` gives a copy to change)."""
        return self._derive().schemas

    @property
    def schema_chars(self) -> int:
        """Characters of the schemas as a prompt estimate counts them
        (`keel.cost.accounting.estimate_tokens`)."""
        return self._derive().schema_chars

    @property
    def version(self) -> str:
        """A short hash of the tool set and schemas (changes when any tool changes)."""
        return self._derive().version

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools
