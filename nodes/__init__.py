"""The agent's nodes: `async (state, runtime) -> partial update`, one module each."""

from keel.nodes.act import act
from keel.nodes.context import AgentContext, ReasoningMode
from keel.nodes.fallback import fallback
from keel.nodes.finish import finish
from keel.nodes.observe import observe
from keel.nodes.reason import reason

__all__ = ["AgentContext", "ReasoningMode", "act", "fallback", "finish", "observe", "reason"]
