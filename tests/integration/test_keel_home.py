"""`KEEL_HOME` moves every default file: nothing lands in the working directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from keel.config import load_settings
from tests.sales_truth import SALES_QUESTION


def test_default_paths_follow_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = load_settings(home=home)
    assert settings.checkpoint_url == f"sqlite:///{home.as_posix()}/checkpoints.sqlite"
    assert load_settings().checkpoint_url == "sqlite:///.keel/checkpoints.sqlite"
    explicit = load_settings(home=home, checkpoint_url="sqlite:///elsewhere.sqlite")
    assert explicit.checkpoint_url == "sqlite:///elsewhere.sqlite"
    again = load_settings(**settings.model_dump(exclude_unset=True))
    assert again.checkpoint_url == settings.checkpoint_url


def test_keel_run_with_keel_home_writes_nothing_in_the_working_directory(tmp_path: Path) -> None:
    home, work, elsewhere = tmp_path / "home", tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(KEEL_HOME=str(home), KEEL_CACHE__BACKEND="sqlite")

    def keel(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "keel", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            timeout=120,
            check=False,
        )

    done = keel("run", "--json", "--model", "scripted:sales", SALES_QUESTION, cwd=work)
    assert done.returncode == 0, done.stderr
    thread = json.loads(done.stdout)["thread_id"]
    assert list(work.iterdir()) == [], "nothing is written in the working directory"
    assert (home / "checkpoints.sqlite").is_file()
    assert (home / "cache.sqlite").is_file()
    assert any(p.suffix in (".sqlite", ".db") for p in home.iterdir() if "sample" in p.name)

    shown = keel("history", "--thread", thread, "--json", cwd=elsewhere)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout), "another directory finds the run under the same home"
