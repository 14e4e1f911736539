"""What the model sees: the system prompt, the history, and a repair hint when needed.

The state keeps the conversation in LangChain's native shape (AI messages with tool calls,
tool messages). For a ReAct model the history is rendered as text: its own replies as it
wrote them, tool results as `Observation:` user turns.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import Runnable

from keel.nodes._compaction import compact_history, system_tokens
from keel.nodes._model_gate import ModelRequest
from keel.nodes._records import text_of
from keel.nodes.context import AgentContext
from keel.nodes.react_protocol import REACT_STOP, format_observation, react_instructions
from keel.tools.sql_context import date_context
from keel.types import AgentState

REPAIR_TEMPLATE = (
    "Your previous reply could not be used: {hint}\n"
    "Reply again, following the required format exactly."
)


def build_prompt(state: AgentState, ctx: AgentContext) -> list[BaseMessage]:
    history: list[BaseMessage] = compact_history(
        list(state.get("messages", [])),
        ctx.settings.compaction,
        system_tokens=system_tokens(ctx.system_prompt),
        summary=state.get("context_summary"),
        summary_upto=state.get("summary_upto", 0),
    ).messages
    system = f"{ctx.system_prompt}\n{date_context(date.fromtimestamp(ctx.clock()))}"
    if ctx.mode == "react":
        system = f"{system}\n\n{react_instructions(ctx.tools)}"
        history = [_as_react_text(m) for m in history]
    return [SystemMessage(system), *history, *repair_exchange(state)]


def reason_request(state: AgentState, ctx: AgentContext, deadline: float) -> ModelRequest:
    """`reason`'s call on `ctx`'s tier: the prompt, and the tools bound (native) or the
    ReAct stop words; a repair pass does not read the model-response cache."""
    native = ctx.mode == "native"
    tools = [t.openai_schema() for t in ctx.tools] if native else []
    model: Runnable[LanguageModelInput, Any]
    if not native:
        model = ctx.model.bind(stop=REACT_STOP)
    else:
        model = ctx.model.bind_tools(tools) if tools else ctx.model
    return ModelRequest(
        "reason",
        ctx,
        build_prompt(state, ctx),
        deadline,
        model=model,
        tools=tools,
        cache_read=state.get("signal") != "repair",
    )


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
