"""Module-level tools for the process-isolation tests (a child process imports them)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from keel.tools.registry import tool


# 15 s: the timeout counts the child's start (a fresh interpreter importing keel), which
# took over 5 s on a loaded 2-core machine, killing the child before it wrote its pid
@tool(isolation="process", timeout_s=15.0)
def stuck(pid_file: str) -> str:
    """Write this process's id, then hang in blocking code no thread could interrupt."""
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(120)
    return "never"


@tool(isolation="process", idempotent=True)
def whoami(label: str) -> str:
    """Say which process ran the call."""
    return f"{label}:{os.getpid()}"
