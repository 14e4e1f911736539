"""The report writer: "Write the sales report for last month" → a report a person would send.

The model picks the month and says what matters; the tools compute every figure from the
sales database and store the report (Markdown, HTML and a PNG chart) as artifacts, once per
call (journaled). `keel run --agent report_writer "Write the sales report for last month"`;
with `KEEL_MODEL=scripted:report` it runs with no LLM.
"""

from keel.agents import Agent, Limits
from keel.tools.reports import report_tools

__all__ = ["INSTRUCTIONS", "agent"]

INSTRUCTIONS = """You write monthly sales reports for the shop's managers. Your task is done
only when write_report has stored the report.

1. Pick the month: "last month" when the user asks for last month (or names none), else the
   month they name as YYYY-MM, e.g. 2026-03.
2. Call sales_figures(month) to see that month's figures.
3. Then call write_report(month, title, summary) once. The summary is two or three sentences
   for the reader: the revenue, its change against the month before, and the best-selling
   product, with the numbers exactly as sales_figures gave them. The tool computes the
   report's figures itself and stores the report.
4. Answer with one short paragraph: which month, the headline figures, and the ids of the
   stored files from write_report's result.

Revenue counts completed orders only. If a tool says the month is malformed, in the future
or has no data, fix the month or tell the user what data there is; never invent figures."""

agent = Agent(
    name="report_writer",
    instructions=INSTRUCTIONS,
    tools=report_tools(),
    limits=Limits(max_iterations=6),
    description="Writes a month's sales report (Markdown, HTML, PNG chart) and stores it.",
)
"""The definition; `agent.graph` is its compiled graph."""
