"""The step-through notebooks run top to bottom offline (scripted model, chaos server),
each in its own Jupyter kernel via nbclient (see `notebook_runner`)."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient.exceptions import CellExecutionError

from keel.tools.sample_db import ensure_sample_db
from tests.integration.notebook_runner import (  # kernels_fixture: the `notebook_kernels` fixture
    NOTEBOOKS,
    kernels_fixture,  # noqa: F401
    run_notebook,
)
from tests.sales_truth import top_products


def test_notebooks_are_committed_without_outputs() -> None:
    books = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert len(books) >= 2
    for path in books:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, path.name


async def test_kernel_runs_the_venv_python_offline(
    notebook_kernels: KernelSpecManager, tmp_path: Path
) -> None:
    """The kernel is this interpreter, a failing cell fails the run, and the network guard
    blocks a non-loopback connection inside the kernel."""
    book = tmp_path / "probe.ipynb"
    cell = "import socket, sys\nsocket.create_connection(('192.0.2.1', 53), timeout=1)"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)]), book)
    with pytest.raises(CellExecutionError, match="NetworkBlockedError"):
        await run_notebook(book, notebook_kernels)
    cell = "import sys"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)]), book)
    run = await run_notebook(book, notebook_kernels, probe={"python": "sys.executable"})
    assert run.values["python"] == sys.executable


async def test_quickstart(notebook_kernels: KernelSpecManager) -> None:
    run = await run_notebook(
        "01_quickstart.ipynb",
        notebook_kernels,
        probe={
            "success": "result.success",
            "output": "result.output",
            "home": "str(home)",
            "tools": "[s.get('action') for s in steps if s['node'] == 'act']",
            "cost": "meta.total_cost",
            "model_calls": "meta.model_calls",
        },
    )
    ns = run.values
    assert ns["success"]
    truth = top_products(ensure_sample_db(Path(ns["home"])), date.today())
    assert truth[0][0] in ns["output"]
    assert ns["tools"] == ["sql_query", "calculator"]
    assert 0 < ns["cost"] < 0.01 and ns["model_calls"] == 3
    printed = run.stdout
    assert ns["output"] in printed
    assert "sql_query" in printed and f"${ns['cost']:.6f}" in printed


def _money(value: float) -> str:
    return f"{value:,.2f}"


async def test_step_through_edits_a_tool_call_and_forks(
    notebook_kernels: KernelSpecManager,
) -> None:
    run = await run_notebook(
        "02_step_through.ipynb",
        notebook_kernels,
        probe={
            "home": "str(settings.home)",
            "expression": "edited.tool_calls[0]['args']['expression']",
            "edited": "[edited_result.success, edited_result.output]",
            "history": "[[c.source, c.step, c.checkpoint_id] for c in history]",
            "before_edit_step": "before_edit.step",
            "forked": "[forked.success, forked.output]",
            "latest": "(await agent.ahistory('step-through', limit=1))[0].checkpoint_id",
        },
    )
    ns = run.values
    truth = top_products(ensure_sample_db(Path(ns["home"])), date.today())
    two, three = sum(r for _, r in truth[:2]), sum(r for _, r in truth)
    assert ns["expression"].count("+") == 1
    assert ns["edited"][0] and _money(two) in ns["edited"][1]
    sources = [source for source, _, _ in ns["history"]]
    assert sources.count("update") == 1
    assert ns["before_edit_step"] < next(s for src, s, _ in ns["history"] if src == "update")
    assert ns["forked"][0] and _money(three) in ns["forked"][1]
    assert ns["latest"] != ns["history"][0][2]  # the fork is now the thread's latest
    assert ns["forked"][1] in run.stdout


async def test_cost_and_tiers(notebook_kernels: KernelSpecManager) -> None:
    run = await run_notebook(
        "04_cost_and_tiers.ipynb",
        notebook_kernels,
        probe={
            "rows": "{name: o.row() for name, o in outcomes.items()}",
            "axes": "len(fig.axes)",
            "left_lines": "len(left.lines)",
            "capped": "[capped.success, capped.error_code, capped.metadata.total_cost]",
        },
    )
    rows = run.values["rows"]
    cost = {name: r["cost_per_run_usd"] for name, r in rows.items()}
    assert all(r["success_pct"] == 100.0 for r in rows.values())
    assert cost["tiers+caches"] < cost["tiers"] < cost["baseline"]
    assert rows["tiers"]["model_calls"]["simple"] > 0  # easy questions went to the cheap tier
    assert rows["tiers+caches"]["hit_rates"]["run"] > 0.3
    assert run.values["axes"] == 2 and run.values["left_lines"] == 3
    assert any("image/png" in o["data"] for o in run.outputs("display_data"))  # the plots
    success, error_code, spent = run.values["capped"]
    assert not success and error_code == "budget_exceeded"
    assert 0 < spent <= 0.01
    assert "budget_exceeded" in run.stdout


async def test_chaos_sweep(notebook_kernels: KernelSpecManager) -> None:
    run = await run_notebook(
        "05_chaos.ipynb",
        notebook_kernels,
        probe={
            "kinds": "list(kinds)",
            "faults_met": "card.faults_met",
            "success": "success",
            "rates": "rates",
            "ax_lines": "len(ax.lines)",
        },
    )
    ns = run.values
    assert "hang" not in ns["kinds"]
    assert sum(ns["faults_met"]["Keel"].values()) > 0
    assert "| Keel |" in run.stdout  # the scorecard table the notebook printed
    success = ns["success"]
    assert len(success["Keel"]) == len(ns["rates"]) == 6
    assert success["Keel"][0] == success["LangGraph create_agent"][0] == 100.0  # no faults
    assert min(success["Keel"]) >= 90.0
    assert success["LangGraph create_agent"][-1] < success["Keel"][-1]
    assert ns["ax_lines"] == 2
    assert any("image/png" in o["data"] for o in run.outputs("display_data"))


@pytest.mark.postgres
async def test_crash_and_resume(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, notebook_kernels: KernelSpecManager
) -> None:
    from tests.conftest import PG_ADMIN_URL

    monkeypatch.setenv("KEEL_NOTEBOOK_POSTGRES", PG_ADMIN_URL)  # the kernel inherits it
    run = await run_notebook(
        "03_crash_and_resume.ipynb",
        notebook_kernels,
        probe={
            "returncode": "child.returncode",
            "before": "[list(row) for row in before]",
            "resumed": "[resumed.success, resumed.output]",
            "bank": "bank.read_text()",
            "after": "[list(row) for row in after]",
        },
    )
    ns = run.values
    assert ns["returncode"] == -9  # SIGKILLed mid-tool
    key = "invoice-7:pay-1"
    assert [(row[0], row[1]) for row in ns["before"]] == [(key, "started")]
    assert ns["before"][0][4] is None
    assert ns["resumed"] == [True, "Paid: moved 450 to ACME"]
    assert ns["bank"].splitlines() == [f"{key} ACME 450"]  # moved once
    assert [(row[0], row[1]) for row in ns["after"]] == [(key, "completed")]
