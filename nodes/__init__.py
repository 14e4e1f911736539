"""The agent's nodes: `async (state, runtime) -> partial update`, one module each.

The private helper modules (`_compaction`, `_grounding`, …) are imported only from inside
this package; what the graph, the runtime and the tests need of them is re-exported here.
The planned flow's names load on first use, as the flow does (`_plan_gate`): an agent
that does not follow the plan never imports its SQL checks, date hints and examples.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from keel.nodes._compaction import (
    SUMMARY_INSTRUCTIONS,
    SUMMARY_MAX_CHARS,
    SUMMARY_PREFIX,
    compact_history,
    cut,
    summarize_middle,
    summary_needed,
)
from keel.nodes._compose import COMPOSE_SYSTEM, column_sums, compose_prompt, should_compose
from keel.nodes._cost_gate import cost_controlled
from keel.nodes._degrade import DIRECT_ANSWER_MAX_TOKENS, DIRECT_ANSWER_PROMPT
from keel.nodes._durable import Decision, ReviewRequest
from keel.nodes._grounding import check_grounded, check_no_unrun_query, ungrounded_numbers
from keel.nodes._model_gate import estimate_request
from keel.nodes._prompt import bound_model, reason_estimate, reason_request
from keel.nodes._records import changes, text_of
from keel.nodes._tokens import estimate_tokens
from keel.nodes.act import act
from keel.nodes.context import AgentContext, ReasoningMode
from keel.nodes.fallback import fallback
from keel.nodes.finish import finish
from keel.nodes.observe import observe
from keel.nodes.reason import reason

if TYPE_CHECKING:
    from keel.nodes._planned import QUERY_GRAMMAR, YES_NO_GRAMMAR
    from keel.nodes._planned_sql import check_query, date_hints, schema_from_prompt
    from keel.nodes._planned_verify import answer_from_rows, read_table, verify_answer

_PLANNED = {
    "QUERY_GRAMMAR": "keel.nodes._planned",
    "YES_NO_GRAMMAR": "keel.nodes._planned",
    "check_query": "keel.nodes._planned_sql",
    "date_hints": "keel.nodes._planned_sql",
    "schema_from_prompt": "keel.nodes._planned_sql",
    "answer_from_rows": "keel.nodes._planned_verify",
    "read_table": "keel.nodes._planned_verify",
    "verify_answer": "keel.nodes._planned_verify",
}

__all__ = [
    "COMPOSE_SYSTEM",
    "DIRECT_ANSWER_MAX_TOKENS",
    "DIRECT_ANSWER_PROMPT",
    "QUERY_GRAMMAR",
    "SUMMARY_INSTRUCTIONS",
    "SUMMARY_MAX_CHARS",
    "SUMMARY_PREFIX",
    "YES_NO_GRAMMAR",
    "AgentContext",
    "Decision",
    "ReasoningMode",
    "ReviewRequest",
    "act",
    "answer_from_rows",
    "bound_model",
    "changes",
    "check_grounded",
    "check_no_unrun_query",
    "check_query",
    "column_sums",
    "compact_history",
    "compose_prompt",
    "cost_controlled",
    "cut",
    "date_hints",
    "estimate_request",
    "estimate_tokens",
    "fallback",
    "finish",
    "observe",
    "read_table",
    "reason",
    "reason_estimate",
    "reason_request",
    "schema_from_prompt",
    "should_compose",
    "summarize_middle",
    "summary_needed",
    "text_of",
    "ungrounded_numbers",
    "verify_answer",
]


def __getattr__(name: str) -> Any:
    if name in _PLANNED:
        return getattr(import_module(_PLANNED[name]), name)
    raise AttributeError(f"module 'keel.nodes' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
