"""Whether `reason` follows the planned flow (`keel.nodes._planned`), without importing it.

The flow's module brings its SQL checks, date hints and question → SQL examples: an agent
that does not use the plan (tools beyond `sql_query` and the calculator, or a model whose
answers are not composed) never imports them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keel.nodes._compose import should_compose

if TYPE_CHECKING:
    from keel.nodes._planned import Stage
    from keel.nodes.context import AgentContext
    from keel.types import AgentState

__all__ = ["PLANNED_TOOLS", "planned_stage", "uses_plan"]

PLANNED_TOOLS = frozenset({"sql_query", "calculator"})
"""An agent whose tools are among these (with `sql_query`) answers by the plan."""


def uses_plan(ctx: AgentContext) -> bool:
    """Whether `ctx`'s agent answers data questions by the plan."""
    if ctx.settings.planned_queries == "never":
        return False
    names = set(ctx.tools.names())
    return (
        "sql_query" in names
        and names <= PLANNED_TOOLS
        and should_compose(ctx.settings.compose_answers, ctx.model_name)
    )


def planned_stage(state: AgentState, ctx: AgentContext) -> Stage | None:
    """The plan's stage for this `reason` step (`_planned.planned_stage`), or None when the
    free loop is in charge; the flow's module is imported only for an agent that uses it."""
    if not uses_plan(ctx):
        return None
    from keel.nodes._planned import planned_stage

    return planned_stage(state, ctx)
