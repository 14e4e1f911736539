"""Run the `keel` command as a real subprocess, the way a user runs it, on a test's own home."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

KeelCli = Callable[..., subprocess.CompletedProcess[str]]


def keel_runner(tmp_path: Path, **env: str) -> KeelCli:
    """`run(*args, **more_env)`: no inherited `KEEL_*`, a fresh home and SQLite checkpoints."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    base.update(
        KEEL_HOME=str(tmp_path / "home"),
        KEEL_CHECKPOINT_URL=f"sqlite:///{tmp_path / 'cp.sqlite'}",
        **env,
    )

    def run(*args: str, **more_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "keel", *args],
            capture_output=True,
            text=True,
            env={**base, **more_env},
            timeout=120,
            check=False,
        )

    return run
