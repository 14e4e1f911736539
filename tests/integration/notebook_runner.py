"""Execute a notebook top to bottom with nbclient in a real Jupyter kernel, as CI should.

The kernel is the venv's own Python (`ipykernel` is in the dev extra): a kernelspec written
for `sys.executable` into a temporary directory, so a `python3` kernelspec installed
elsewhere on the machine can't slip in another interpreter. Before the notebook's first cell
a setup cell (not saved anywhere) installs the non-loopback network guard in the kernel,
the notebooks' offline promise. The kernel starts in `notebooks/` and inherits this
process's environment (e.g. `KEEL_NOTEBOOK_POSTGRES`). After the last cell an optional
probe cell prints chosen values as JSON, so tests assert on the executed notebook's
outputs. Any failing cell (including the notebooks' own `assert` cells) fails the test with
the kernel's traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
import structlog
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
KERNEL_NAME = "keel-venv"
CELL_TIMEOUT_S = 120
PROBE_MARK = "KEEL-NOTEBOOK-PROBE:"
SETUP_CELL = (
    "from keel.testing.network_guard import block_non_loopback\n"
    "block_non_loopback()  # the notebooks promise no network\n"
    "del block_non_loopback"
)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """For tests that run the scorecard in-process (imported there, autouse): it configures
    logging onto the stderr of the moment, which pytest closes after the test; put structlog
    and the root logger back afterwards. Notebooks now run in their own kernel."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers, root.level = handlers, level


@pytest.fixture(scope="session", name="notebook_kernels")
def kernels_fixture(tmp_path_factory: pytest.TempPathFactory) -> KernelSpecManager:
    """Kernelspecs holding one kernel that runs this very interpreter (the venv's)."""
    kernels = tmp_path_factory.mktemp("jupyter") / "kernels"
    write_kernel_spec(kernels / KERNEL_NAME, overrides={"display_name": "Keel (venv)"})
    spec = json.loads((kernels / KERNEL_NAME / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
    return KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)


@dataclass
class NotebookRun:
    """An executed notebook: its code cells (with outputs) and the probed values."""

    cells: list[Any]
    values: dict[str, Any]

    @property
    def stdout(self) -> str:
        """Everything the notebook's cells printed, in order."""
        return "".join(
            out.get("text", "")
            for cell in self.cells
            for out in cell.get("outputs", [])
            if out.get("output_type") == "stream" and out.get("name") == "stdout"
        )

    def outputs(self, output_type: str) -> list[Any]:
        return [o for c in self.cells for o in c["outputs"] if o["output_type"] == output_type]


def _probe_cell(probe: dict[str, str]) -> str:
    items = ", ".join(f"{key!r}: {expr}" for key, expr in probe.items())
    return f"import json as _json\nprint({PROBE_MARK!r} + _json.dumps({{{items}}}, default=str))"


async def run_notebook(
    name: str | Path, kernels: KernelSpecManager, probe: dict[str, str] | None = None
) -> NotebookRun:
    """Execute `notebooks/<name>` (or the notebook at an absolute path) in a fresh kernel;
    `probe` maps keys to expressions evaluated (top-level `await` allowed) after the last
    cell."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    own = [c for c in nb.cells if c.cell_type == "code"]
    nb.cells.insert(0, nbformat.v4.new_code_cell(SETUP_CELL))
    if probe:
        nb.cells.append(nbformat.v4.new_code_cell(_probe_cell(probe)))
    km = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=kernels)
    client = NotebookClient(
        nb,
        km=km,
        timeout=CELL_TIMEOUT_S,
        startup_timeout=60,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    await client.async_execute(cleanup_kc=True)  # shut the kernel down even on failure
    values: dict[str, Any] = {}
    if probe:
        printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
        line = next(ln for ln in printed.splitlines() if ln.startswith(PROBE_MARK))
        values = json.loads(line.removeprefix(PROBE_MARK))
    return NotebookRun(cells=own, values=values)
