"""Run a notebook's code cells top to bottom in one namespace, as a Jupyter kernel would.

Cells are compiled with top-level `await` allowed (as IPython does) and run in the test's
event loop, from `notebooks/` as the working directory; matplotlib draws off-screen. Each
cell's source is named `<notebook>[i]` in tracebacks. This is cheaper than starting a
kernel per notebook (nbclient) and runs the same code; notebooks use no IPython magics.
"""

from __future__ import annotations

import ast
import inspect
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Notebooks (and the scorecard) configure logging onto the stderr of the moment, which
    pytest closes after the test: put structlog and the root logger back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers, root.level = handlers, level


def code_cells(path: Path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


async def run_notebook(name: str) -> dict[str, Any]:
    """Execute `notebooks/<name>`; returns the namespace the cells left behind."""
    import matplotlib

    matplotlib.use("Agg")
    path = NOTEBOOKS / name
    namespace: dict[str, Any] = {"__name__": "__main__"}
    cwd = Path.cwd()
    os.chdir(NOTEBOOKS)
    try:
        for i, source in enumerate(code_cells(path)):
            code = compile(source, f"{name}[{i}]", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            outcome = eval(code, namespace)  # our own notebook, run as Jupyter runs it
            if inspect.isawaitable(outcome):
                await outcome
    finally:
        os.chdir(cwd)
        import matplotlib.pyplot as plt

        plt.close("all")
    namespace["__cells__"] = i + 1
    return namespace
