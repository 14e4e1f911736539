"""`keel eval --workloads`: every workload's eval, each checked against its own data."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from keel.cli import app


def test_every_workload_reports_success_latency_and_cost() -> None:
    result = CliRunner().invoke(app, ["eval", "--workloads", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["workload"]: r for r in json.loads(result.stdout.strip().splitlines()[-1])}
    assert set(rows) == {"report_writer", "ticket_desk", "code_reviewer"}
    for row in rows.values():
        assert row["success"] == 1.0 and row["runs"] >= 1 and not row["failures"]
        assert 0 < row["p50_s"] <= row["p99_s"] and row["cost_per_run_usd"] > 0


def test_a_model_that_does_not_do_the_work_fails_every_workload() -> None:
    result = CliRunner().invoke(app, ["eval", "--workloads", "--model", "scripted:echo", "--json"])
    assert result.exit_code == 1
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    assert [r["success"] for r in rows] == [0.0, 0.0, 0.0]
    assert all(r["failures"] for r in rows)
