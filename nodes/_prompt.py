"""What the model sees: the system prompt, the history, and a repair hint when needed.

The state keeps the conversation in LangChain's native shape (AI messages with tool calls,
tool messages). For a ReAct model the history is rendered as text: its own replies as it
wrote them, tool results as `Observation:` user turns.
"""

from __future__ import annotations

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from keel.types import AgentState
from nodes._records import text_of
from nodes.context import AgentContext
from nodes.react_protocol import format_observation, react_instructions

REPAIR_TEMPLATE = (
    "Your previous reply could not be used: {hint}\n"
    "Reply again, following the required format exactly."
)


def build_prompt(state: AgentState, ctx: AgentContext) -> list[BaseMessage]:
    history: list[BaseMessage] = list(state.get("messages", []))
    if ctx.mode == "react":
        system = f"{ctx.system_prompt}\n\n{react_instructions(ctx.tools)}"
        history = [_as_react_text(m) for m in history]
    else:
        system = ctx.system_prompt
    prompt: list[BaseMessage] = [SystemMessage(system), *history]
    if state.get("signal") == "repair" and state.get("repair_hint"):
        rejected = state.get("rejected_output") or ""
        if rejected:
            prompt.append(AIMessage(rejected))
        prompt.append(HumanMessage(REPAIR_TEMPLATE.format(hint=state["repair_hint"])))
    return prompt


def _as_react_text(message: BaseMessage) -> BaseMessage:
    if isinstance(message, ToolMessage):
        return HumanMessage(format_observation(text_of(message.content)))
    if isinstance(message, AIMessage):
        return AIMessage(text_of(message.content))
    return message
