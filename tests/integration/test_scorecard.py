"""`keel eval`: Keel and a plain LangGraph agent side by side under one fault plan."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from keel.cli import app
from keel.errors import ConfigError
from keel.evals.scorecard import Outcome, Report, parse_kinds, scorecard
from tests.integration.notebook_runner import restore_logging  # noqa: F401  (autouse)

MIX = "rate_limit,server_error,reset,malformed_args,empty,unknown_tool"


async def test_both_systems_meet_faults_and_keel_recovers() -> None:
    card = await scorecard(tasks=6, rate=0.5, kinds=parse_kinds(MIX), seed=2)
    keel, base = (r.row() for r in card.reports)
    assert [r.name for r in card.reports] == ["Keel", "LangGraph create_agent"]
    assert sum(card.faults_met["Keel"].values()) > 0
    assert sum(card.faults_met["LangGraph create_agent"].values()) > 0
    assert keel["runs"] == base["runs"] == 6
    assert keel["success"] == 100.0 and keel["availability"] == 100.0
    assert keel["faulted"] > 0 and keel["recovery"] == 100.0
    assert base["success"] < keel["success"]
    # served tokens priced at gpt-4o-mini: a few hundred tokens a run, well under a cent
    assert 0 < keel["cost"] < 0.01 and 0 < base["cost"] < 0.01
    assert keel["p99"] >= keel["p50"] > 0
    assert keel["degraded"] == 0.0 and base["degraded"] == 0.0
    assert "| Keel | 100.0 % | 100.0 % | 0.0 % | 100.0 % (" in card.markdown()


async def test_without_faults_both_succeed_and_recovery_is_vacuous() -> None:
    card = await scorecard(tasks=2, rate=0.0, seed=3)
    for report in card.reports:
        row = report.row()
        assert row["success"] == 100.0 and row["faulted"] == 0 and row["recovery"] == 100.0


def test_row_counts_availability_apart_from_success() -> None:
    report = Report("x")
    report.outcomes = [
        Outcome(ok=True, answered=True, seconds=0.1, model_calls=2, faults=1, cost_usd=0.002),
        Outcome(ok=False, answered=True, seconds=0.3, model_calls=3, faults=1, cost_usd=0.004),
        Outcome(ok=False, answered=False, seconds=0.2, model_calls=1, faults=0),
        Outcome(ok=True, answered=True, seconds=0.4, model_calls=2, faults=0, cost_usd=0.002),
    ]
    row = report.row()
    assert row["success"] == 50.0 and row["availability"] == 75.0
    assert row["recovery"] == 50.0 and row["faulted"] == 2
    assert row["p99"] == 0.4 and row["cost"] == pytest.approx(0.002)
    assert row["cost_per_success"] == pytest.approx(0.004)


def test_unknown_fault_kind_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown fault kind.*bogus"):
        parse_kinds("rate_limit,bogus")
    assert parse_kinds(None)[0] == "rate_limit"


def test_keel_eval_prints_the_scorecard_as_json() -> None:
    result = CliRunner().invoke(
        app, ["eval", "--tasks", "2", "--rate", "0.5", "--faults", MIX, "--seed", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(data["systems"]) == {"Keel", "LangGraph create_agent"}
    assert data["priced_as"] == "gpt-4o-mini" and data["fault_rate"] == 0.5
    assert data["systems"]["Keel"]["runs"] == 2


def test_keel_eval_table_and_usage_errors() -> None:
    runner = CliRunner()
    table = runner.invoke(app, ["eval", "--tasks", "1", "--rate", "0"])
    assert table.exit_code == 0, table.output
    assert "P99 latency" in table.stdout and "error recovery" in table.stdout
    bad = runner.invoke(app, ["eval", "--tasks", "1", "--faults", "nope"])
    assert bad.exit_code == 2 and "unknown fault kind" in bad.output
    price = runner.invoke(app, ["eval", "--tasks", "1", "--price-as", "nobody"])
    assert price.exit_code == 2 and "no hosted price" in price.output
