"""The agent's nodes: `async (state, runtime) -> partial update`, one module each."""

from nodes.act import act
from nodes.context import AgentContext, ReasoningMode
from nodes.fallback import fallback
from nodes.finish import finish
from nodes.observe import observe
from nodes.reason import reason

__all__ = ["AgentContext", "ReasoningMode", "act", "fallback", "finish", "observe", "reason"]
