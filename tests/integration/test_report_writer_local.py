"""The report writer with the embedded default model, for real: `keel run --agent report_writer`
on the headline task; the stored report is checked against the truth computed from raw rows.

Slow (a real model on the CPU), but part of the default run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from keel.config import DEFAULT_MODEL
from tests.integration.test_local_server import local_cli_env, require_weights
from tests.integration.test_report_writer import _check_html, _check_markdown, _check_png
from tests.report_truth import HEADLINE, last_month, truth

pytestmark = [pytest.mark.slow, pytest.mark.local_workload]


def test_the_local_model_writes_last_months_report(tmp_path: Path) -> None:
    require_weights()
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "graph.py").write_text("from keel.graphs.report_writer import agent\n")
    (folder / "langgraph.json").write_text(
        json.dumps({"dependencies": ["."], "graphs": {"report_writer": "./graph.py:agent"}})
    )
    env = local_cli_env(tmp_path, run_timeout_s=1500)
    home = tmp_path / "home"

    def keel(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "keel", *args],
            capture_output=True,
            text=True,
            cwd=folder,
            env=env,
            timeout=1800,
            check=False,
        )

    done = keel("run", "--agent", "report_writer", "--json", "--thread", "local", HEADLINE)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["metadata"]["model"] == DEFAULT_MODEL
    assert result["success"], result
    actions = [s["action"] for s in result["metadata"]["trace"] if s["node"] == "act"]
    assert "write_report" in actions, (actions, result["output"])
    month = last_month(date.today())
    listed = json.loads(keel("artifacts", "list", "--thread", "local", "--json").stdout)
    by_name = {a["name"]: a["id"] for a in listed}
    assert f"sales-{month}.md" in by_name, (by_name, result["output"])
    t = truth(home / "sample.db", month)

    def fetch(name: str) -> bytes:
        got = subprocess.run(
            [sys.executable, "-m", "keel", "artifacts", "get", by_name[name]],
            capture_output=True,
            cwd=folder,
            env=env,
            timeout=120,
            check=True,
        )
        return got.stdout

    _check_markdown(fetch(f"sales-{month}.md").decode(), t)
    _check_html(fetch(f"sales-{month}.html").decode(), t)
    _check_png(fetch(f"sales-{month}-chart.png"))
