"""The step-through notebooks run top to bottom offline (scripted model, chaos server)."""

from __future__ import annotations

import json
from datetime import date

import pytest

from tests.integration.notebook_runner import (  # restore_logging: autouse
    NOTEBOOKS,
    restore_logging,  # noqa: F401
    run_notebook,
)
from tests.sales_truth import top_products
from tools.sample_db import ensure_sample_db


def test_notebooks_are_committed_without_outputs() -> None:
    books = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert len(books) >= 2
    for path in books:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, path.name


async def test_quickstart(capsys: pytest.CaptureFixture[str]) -> None:
    ns = await run_notebook("01_quickstart.ipynb")
    result = ns["result"]
    assert result.success
    truth = top_products(ensure_sample_db(ns["home"]), date.today())
    assert truth[0][0] in result.output
    tools = [s.get("action") for s in ns["steps"] if s["node"] == "act"]
    assert tools == ["sql_query", "calculator"]
    assert 0 < ns["meta"]["total_cost"] < 0.01 and ns["meta"]["model_calls"] == 3
    printed = capsys.readouterr().out
    assert "sql_query" in printed and f"${ns['meta']['total_cost']:.6f}" in printed


def _money(value: float) -> str:
    return f"{value:,.2f}"


async def test_step_through_edits_a_tool_call_and_forks() -> None:
    ns = await run_notebook("02_step_through.ipynb")
    truth = top_products(ensure_sample_db(ns["settings"].home), date.today())
    two, three = sum(r for _, r in truth[:2]), sum(r for _, r in truth)
    assert ns["edited"].tool_calls[0]["args"]["expression"].count("+") == 1
    assert ns["edited_result"].success and _money(two) in ns["edited_result"].output
    assert [c.source for c in ns["history"]].count("update") == 1
    assert ns["before_edit"].step < next(c.step for c in ns["history"] if c.source == "update")
    assert ns["forked"].success and _money(three) in ns["forked"].output
    latest = await ns["agent"].ahistory("step-through", limit=1)
    assert latest[0].checkpoint_id != ns["history"][0].checkpoint_id  # the fork is now latest


async def test_cost_and_tiers() -> None:
    ns = await run_notebook("04_cost_and_tiers.ipynb")
    rows = {name: o.row() for name, o in ns["outcomes"].items()}
    cost = {name: r["cost_per_run_usd"] for name, r in rows.items()}
    assert all(r["success_pct"] == 100.0 for r in rows.values())
    assert cost["tiers+caches"] < cost["tiers"] < cost["baseline"]
    assert rows["tiers"]["model_calls"]["simple"] > 0  # easy questions went to the cheap tier
    assert rows["tiers+caches"]["hit_rates"]["run"] > 0.3
    assert len(ns["fig"].axes) == 2 and len(ns["left"].lines) == 3
    capped = ns["capped"]
    assert not capped.success and capped.error_code == "budget_exceeded"
    assert 0 < capped.metadata["total_cost"] <= 0.01


async def test_chaos_sweep() -> None:
    ns = await run_notebook("05_chaos.ipynb")
    assert "hang" not in ns["kinds"]
    card = ns["card"]
    assert sum(card.faults_met["Keel"].values()) > 0
    assert "| Keel |" in card.markdown()
    success = ns["success"]
    assert len(success["Keel"]) == len(ns["rates"]) == 6
    assert success["Keel"][0] == success["LangGraph create_agent"][0] == 100.0  # no faults
    assert min(success["Keel"]) >= 90.0
    assert success["LangGraph create_agent"][-1] < success["Keel"][-1]
    assert len(ns["ax"].lines) == 2


@pytest.mark.postgres
async def test_crash_and_resume(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import PG_ADMIN_URL

    monkeypatch.setenv("KEEL_NOTEBOOK_POSTGRES", PG_ADMIN_URL)
    ns = await run_notebook("03_crash_and_resume.ipynb")
    assert ns["child"].returncode == -9  # SIGKILLed mid-tool
    key = "invoice-7:pay-1"
    assert [(row[0], row[1]) for row in ns["before"]] == [(key, "started")]
    assert ns["before"][0][4] is None
    assert ns["resumed"].success and ns["resumed"].output == "Paid: moved 450 to ACME"
    assert ns["bank"].read_text().splitlines() == [f"{key} ACME 450"]  # moved once
    assert [(row[0], row[1]) for row in ns["after"]] == [(key, "completed")]
