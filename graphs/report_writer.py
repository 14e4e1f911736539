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
2. Call write_report(month, title). It computes every figure from the database itself
   (revenue, orders, top products, the change against the month before), writes a summary
   of them, draws the chart and stores the report.
3. Answer with one short paragraph: which month, the headline figures from write_report's
   result, and the ids of the stored files.

Revenue counts completed orders only. If the tool says the month is malformed, in the future
or has no data, fix the month or tell the user what data there is; never invent figures or
say a report is stored before write_report has returned its ids."""

agent = Agent(
    name="report_writer",
    instructions=INSTRUCTIONS,
    tools=report_tools(),
    limits=Limits(max_iterations=6),
    description="Writes a month's sales report (Markdown, HTML, PNG chart) and stores it.",
)
"""The definition; `agent.graph` is its compiled graph."""
