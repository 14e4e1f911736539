"""The library: a bound agent (`AgentRuntime`, `open_agent`), running and resuming it, its
durability API (approve, history, fork, prune) and the run dependencies it is built from."""

from keel.runtime.agent import (
    Agent,
    AgentRuntime,
    default_agent,
    open_agent,
    refuse_unjournaled_effects,
)
from keel.runtime.context import build_context, system_prompt_for
from keel.runtime.durable import CheckpointInfo, nothing_to_resume, pending_nodes, unfinished
from keel.runtime.entry import resume, resume_settings, run

__all__ = [
    "Agent",
    "AgentRuntime",
    "CheckpointInfo",
    "build_context",
    "default_agent",
    "nothing_to_resume",
    "open_agent",
    "pending_nodes",
    "refuse_unjournaled_effects",
    "resume",
    "resume_settings",
    "run",
    "system_prompt_for",
    "unfinished",
]
