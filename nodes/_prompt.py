"""What the model sees: the system prompt, the history, and a repair hint when needed.

The state keeps the conversation in LangChain's native shape (AI messages with tool calls,
tool messages). For a ReAct model the history is rendered as text: its own replies as it
wrote them, tool results as `Observation:` user turns.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import Runnable

from keel.cost.accounting import CallEstimate, estimate_call
from keel.nodes._compaction import compact_history, system_tokens
from keel.nodes._model_gate import ModelRequest
from keel.nodes._records import text_of
from keel.nodes._tokens import estimate_tokens
from keel.nodes.context import AgentContext, PromptMemo
from keel.nodes.react_protocol import REACT_STOP, format_observation, react_instructions
from keel.tools.sql_context import date_context
from keel.types import AgentState

REPAIR_TEMPLATE = (
    "Your previous reply could not be used: {hint}\n"
    "Reply again, following the required format exactly."
)


def build_prompt(state: AgentState, ctx: AgentContext) -> list[BaseMessage]:
    """The messages of `reason`'s call: system prompt, (compacted) history, repair exchange.

    The cost gate estimates this prompt right before `reason` builds it for the call, so the
    last one made with `ctx` is reused when nothing it is made from has changed (the same
    history list, still holding the same number of messages, and the same keys)."""
    return list(_prompt_entry(state, ctx)[2])


def _prompt_entry(state: AgentState, ctx: AgentContext) -> PromptMemo:
    """`build_prompt`'s memo entry for `state`: the history it was made from, its key, the
    prompt, and the prompt's estimates so far (by the tool schemas' size)."""
    messages = state.get("messages", [])
    today = date.fromtimestamp(ctx.clock())
    key = (
        len(messages),
        today,
        state.get("context_summary"),
        state.get("summary_upto", 0),
        state.get("signal"),
        state.get("repair_hint"),
        state.get("rejected_output"),
    )
    memo = ctx.prompt_memo
    if memo and memo[0][0] is messages and memo[0][1] == key:
        return memo[0]
    history: list[BaseMessage] = compact_history(
        list(messages),
        ctx.settings.compaction,
        system_tokens=system_tokens(ctx.system_prompt),
        summary=state.get("context_summary"),
        summary_upto=state.get("summary_upto", 0),
    ).messages
    system = f"{ctx.system_prompt}\n{date_context(today)}"
    if ctx.mode == "react":
        tools = ctx.tools
        instructions = tools.memo("react_instructions", lambda: react_instructions(tools))
        system = f"{system}\n\n{instructions}"
        history = [_as_react_text(m) for m in history]
    prompt = [SystemMessage(system), *history, *repair_exchange(state)]
    entry: PromptMemo = (messages, key, prompt, {})
    memo[:] = [entry]  # holds `messages`: its id stays its own
    return entry


def _prompt_tokens(entry: PromptMemo, tool_chars: int) -> int:
    """The estimate of a memo entry's prompt with tool schemas of `tool_chars` characters,
    made once: the cost gate's fitting and the model gate's check ask for the same one."""
    tokens = entry[3].get(tool_chars)
    if tokens is None:
        tokens = entry[3][tool_chars] = estimate_tokens(entry[2], tool_chars)
    return tokens


def _tool_chars(ctx: AgentContext) -> int:
    """The size of the tool schemas `reason`'s call sends (native mode binds them; a ReAct
    prompt lists the tools in its system message instead)."""
    return ctx.tools.schema_chars if ctx.mode == "native" else 0


def bound_model(ctx: AgentContext) -> Runnable[LanguageModelInput, Any]:
    """`ctx`'s model with the tools bound (native) or the ReAct stop words, made once per
    model and tool set (kept by the registry) rather than before every call. The model gets
    its own copy of the schemas: a provider may adjust them in place (strict mode)."""
    model, tools = ctx.model, ctx.tools
    make: Callable[[], tuple[Any, Runnable[LanguageModelInput, Any]]]
    if ctx.mode != "native":
        make = lambda: (model, model.bind(stop=REACT_STOP))  # noqa: E731
    elif len(tools):
        make = lambda: (model, model.bind_tools([t.openai_schema() for t in tools]))  # noqa: E731
    else:
        return model
    # the entry holds the model itself, so its id cannot be reused while the entry lives
    return tools.memo((ctx.mode, id(model)), make)[1]


def reason_request(state: AgentState, ctx: AgentContext, deadline: float) -> ModelRequest:
    """`reason`'s call on `ctx`'s tier: the prompt, and the tools bound (native) or the
    ReAct stop words; a repair pass does not read the model-response cache."""
    native = ctx.mode == "native"
    entry = _prompt_entry(state, ctx)
    tool_chars = _tool_chars(ctx)
    return ModelRequest(
        "reason",
        ctx,
        list(entry[2]),
        deadline,
        model=bound_model(ctx),
        tools=ctx.tools.openai_schemas() if native else (),
        tool_chars=tool_chars,
        cache_read=state.get("signal") != "repair",
        prompt_tokens=_prompt_tokens(entry, tool_chars),
    )


def reason_estimate(state: AgentState, ctx: AgentContext) -> CallEstimate:
    """The worst case of `reason`'s next call on `ctx`'s tier, without binding its model:
    the prompt, the tool schemas (native) and `max_tokens` of reply."""
    prompt = _prompt_tokens(_prompt_entry(state, ctx), _tool_chars(ctx))
    return estimate_call(prompt, ctx.settings.max_tokens, ctx.price)


def repair_exchange(state: AgentState) -> list[BaseMessage]:
    """On a repair pass: the rejected reply and why it was rejected (else nothing).

    When the repaired reply calls tools, `reason` keeps this exchange in the history, so the
    model still sees its earlier answer, and what to fix in it, once the tool results arrive.
    """
    if state.get("signal") != "repair" or not state.get("repair_hint"):
        return []
    rejected = state.get("rejected_output") or ""
    hint = HumanMessage(REPAIR_TEMPLATE.format(hint=state["repair_hint"]))
    return [AIMessage(rejected), hint] if rejected else [hint]


def _as_react_text(message: BaseMessage) -> BaseMessage:
    if isinstance(message, ToolMessage):
        return HumanMessage(format_observation(text_of(message.content)))
    if isinstance(message, AIMessage):
        return AIMessage(text_of(message.content))
    return message
