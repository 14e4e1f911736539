"""The embedded default model, for real: `keel run --json` (no API key, no network) answers the
README's sales question and a count question over the sample database; each answer is checked
against the independently computed truth.

Slow (a real model on the CPU), but part of the default run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from bench.eval_questions import is_correct, questions
from keel.config import DEFAULT_MODEL
from keel.tools.sample_db import ensure_sample_db
from tests.integration.test_local_server import local_cli_env, require_weights
from tests.sales_truth import SALES_QUESTION

pytestmark = [pytest.mark.slow]


COUNT_QUESTION = "How many completed orders were there last month?"


@pytest.mark.parametrize("question", [SALES_QUESTION, COUNT_QUESTION])
def test_keel_run_answers_a_data_question_with_the_local_model(
    tmp_path: Path, question: str
) -> None:
    require_weights()
    env = local_cli_env(tmp_path, run_timeout_s=1500)
    home = tmp_path / "home"
    done = subprocess.run(
        [sys.executable, "-m", "keel", "run", "--json", question],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["metadata"]["model"] == DEFAULT_MODEL
    assert result["success"], result
    expected = next(
        q for q in questions(ensure_sample_db(home), date.today()) if q.text == question
    )
    assert is_correct(result["output"], expected.expected), result["output"]
    actions = [s["action"] for s in result["metadata"]["trace"] if s["node"] == "act"]
    assert "sql_query" in actions
