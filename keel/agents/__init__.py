"""Agent definitions: `Agent` (a frozen value that compiles to Keel's agent graph), its
`Limits` and `Budget`, and the run context built from it (`build_context`)."""

from keel.agents.context import Progress, build_context, system_prompt_for
from keel.agents.definition import CONFIG_KEYS, Agent, Budget, Limits

__all__ = [
    "CONFIG_KEYS",
    "Agent",
    "Budget",
    "Limits",
    "Progress",
    "build_context",
    "system_prompt_for",
]
