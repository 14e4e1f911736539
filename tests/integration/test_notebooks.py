"""The step-through notebooks run top to bottom offline (scripted model, chaos server)."""

from __future__ import annotations

import json
from datetime import date

import pytest

from tests.integration.notebook_runner import NOTEBOOKS, run_notebook
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
