"""The built-in data assistant, defined the way a user defines an agent.

`keel run`, `keel serve` and `open_agent()` use it when no `langgraph.json` names another:
the built-in prompt, the bundled `sql_query` and `calculator` tools (the SQL schema is
appended to the prompt because `sql_query` is among them), and the model, limits, budget
and approvals of the settings.
"""

from keel.agents import Agent
from keel.nodes.context import DEFAULT_SYSTEM_PROMPT

__all__ = ["agent"]

agent = Agent(
    name="data_analyst",
    instructions=DEFAULT_SYSTEM_PROMPT,
    description="Answers questions about the data in a SQL database, with a calculator.",
)
"""The definition; `agent.graph` is its compiled graph."""
