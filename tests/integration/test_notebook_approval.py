"""`notebooks/approval.ipynb` runs top to bottom, with top-level `await` as in Jupyter."""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path
from typing import Any

NOTEBOOK = Path(__file__).parents[2] / "notebooks" / "approval.ipynb"


async def test_approval_notebook_runs() -> None:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    namespace: dict[str, Any] = {}
    ran = 0
    for i, cell in enumerate(c for c in cells if c["cell_type"] == "code"):
        source = "".join(cell["source"])
        code = compile(
            source, f"{NOTEBOOK.name}[{i}]", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        )
        outcome = eval(code, namespace)  # our own notebook, run as Jupyter runs it
        if inspect.isawaitable(outcome):
            await outcome
        ran += 1
    assert ran == 5
    assert namespace["transfers"] == [("ACME", 450)]
    assert namespace["pending"][0]["kind"] == "approval"
