"""The headline question, answered end to end by the scripted analyst, in both modes."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pytest

from keel.testing.policies import scripted_model
from keel.tools.sample_db import ensure_sample_db
from tests.sales_truth import SALES_QUESTION, top_products


def money(text: str) -> list[float]:
    return [float(m.replace(",", "")) for m in re.findall(r"\$([\d,]+\.\d{2})", text)]


@pytest.mark.parametrize("spec", ["sales", "sales-react"])
async def test_sales_question_is_answered_correctly(
    agent_factory: Any, spec: str, settings_factory: Any
) -> None:
    home = settings_factory().home
    truth = top_products(ensure_sample_db(home), date.today())
    async with agent_factory(scripted_model(spec)) as agent:
        result = await agent.arun(SALES_QUESTION)
    assert result.success, result.error
    assert agent.context.mode == ("react" if spec.endswith("react") else "native")
    tools_used = [s["action"] for s in result.metadata.trace if s["node"] == "act"]
    assert tools_used == ["sql_query", "calculator"]
    names = [name for name, _ in truth]
    positions = [result.output.index(name) for name in names]
    assert positions == sorted(positions), "products are listed in revenue order"
    amounts = money(result.output)
    assert amounts[:3] == [revenue for _, revenue in truth]
    assert amounts[3] == pytest.approx(sum(revenue for _, revenue in truth), abs=0.005)
    assert result.metadata.iterations == 3
