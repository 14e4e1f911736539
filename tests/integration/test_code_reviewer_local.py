"""The code reviewer with the embedded default model, for real: `keel run --agent code_reviewer`
on the headline task over the sample repository; the posted comments are checked against the
seeded defects (their lines found in the files at head).

Slow (a real model on the CPU), but part of the default run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from keel.config import DEFAULT_MODEL, load_settings
from keel.reviews.store import list_comments, open_reviews
from keel.tools.review_sample import CLEAN_FILES, build_sample_repo
from tests.integration.test_code_reviewer import seeded_lines
from tests.integration.test_local_server import local_cli_env, require_weights

pytestmark = [pytest.mark.slow, pytest.mark.local_workload]


def test_the_local_model_flags_the_seeded_defects(tmp_path: Path) -> None:
    require_weights()
    sample = build_sample_repo(tmp_path / "shop")
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "graph.py").write_text("from keel.graphs.code_reviewer import agent\n")
    (folder / "langgraph.json").write_text(
        json.dumps({"dependencies": ["."], "graphs": {"code_reviewer": "./graph.py:agent"}})
    )
    env = local_cli_env(tmp_path, run_timeout_s=3000)
    home = tmp_path / "home"
    done = subprocess.run(
        [sys.executable, "-m", "keel", "run", "--agent", "code_reviewer", "--json",
         "--thread", "local", sample.task()],
        capture_output=True, text=True, cwd=folder, env=env, timeout=3600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["metadata"]["model"] == DEFAULT_MODEL
    actions = [s["action"] for s in result["metadata"]["trace"] if s["node"] == "act"]
    rows = list_comments(open_reviews(load_settings(home=home)))
    places = {(r["path"], r["line"]) for r in rows}
    truth = seeded_lines(sample.path)
    missed = {kind: place for kind, place in truth.items() if place not in places}
    report = f"actions={actions} comments={[(r['path'], r['line'], r['body']) for r in rows]}"
    assert result["success"], (result, report)
    assert not missed, f"seeded defects not flagged: {missed}; {report}"
    assert len(rows) == len(places), f"a line got two comments; {report}"
    assert not {r["path"] for r in rows} & set(CLEAN_FILES), report
