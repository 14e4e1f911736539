"""`notebooks/approval.ipynb` runs top to bottom in a Jupyter kernel (nbclient); its own
`assert` cells check the pause and the edited approval."""

from __future__ import annotations

from jupyter_client.kernelspec import KernelSpecManager

from tests.integration.notebook_runner import (  # kernels_fixture: the `notebook_kernels` fixture
    kernels_fixture,  # noqa: F401
    run_notebook,
)


async def test_approval_notebook_runs(notebook_kernels: KernelSpecManager) -> None:
    run = await run_notebook(
        "approval.ipynb",
        notebook_kernels,
        probe={"transfers": "transfers", "kind": "pending[0]['kind']"},
    )
    assert len(run.cells) == 5 and all(c["execution_count"] for c in run.cells)
    assert run.values == {"transfers": [["ACME", 450]], "kind": "approval"}
    results = [o["data"]["text/plain"] for o in run.outputs("execute_result")]
    assert any("ACME" in r and "450" in r for r in results)  # the edited call's output
