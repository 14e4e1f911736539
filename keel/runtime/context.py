"""The run dependencies for a set of settings (`build_context`); they live in
`keel.agents.context`, below the runtime, and are re-exported here for existing callers."""

from keel.agents.context import Progress, build_context, system_prompt_for

__all__ = ["Progress", "build_context", "system_prompt_for"]
