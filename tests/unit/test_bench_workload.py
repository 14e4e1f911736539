"""bench/workload.py: the settings both sides share."""

from __future__ import annotations

from pathlib import Path

from bench.concurrency import LIMITS
from bench.workload import keel_settings


def test_the_many_runs_limits_reach_the_sql_tool_on_both_sides(tmp_path: Path) -> None:
    """With the benches' hour-long timeouts the SQL tool's statement timeout is as long (a
    query waiting its turn is not cancelled); other limits, or none, leave its default."""
    many = keel_settings("memory://", tmp_path, LIMITS)
    assert many.sql.statement_timeout_s == max(LIMITS.values())
    assert many.limits.tool_timeout_s == LIMITS["tool_timeout_s"]
    default = keel_settings("memory://", tmp_path).sql.statement_timeout_s
    assert keel_settings("memory://", tmp_path, {"max_iterations": 50}).sql.statement_timeout_s == (
        default
    )
