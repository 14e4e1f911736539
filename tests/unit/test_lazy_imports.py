"""Start-up (issue 19): a run imports nothing it does not use. Redis only when a Redis URL
is configured, `limits` only when a rate is; checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

WATCHED = ("redis", "limits")

RUN = """
import asyncio, json, sys
from keel import load_settings
from keel.runtime import open_agent

async def main():
    settings = load_settings(
        model="scripted:sales",
        checkpoint_url="memory://",
        home=sys.argv[1],
        **json.loads(sys.argv[2]),
    )
    async with open_agent(settings) as agent:
        result = await agent.arun("Which 3 products had the highest revenue last month?")
    assert result.success, result.error

asyncio.run(main())
print(json.dumps([m for m in WATCHED if m in sys.modules]))
""".replace("WATCHED", repr(WATCHED))


def _loaded(tmp_path: Path, **settings: object) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", RUN, str(tmp_path), json.dumps(settings)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_cli_and_runtime_loads_neither_redis_nor_limits() -> None:
    code = (
        f"import keel.cli, keel.runtime, sys; print([m for m in {WATCHED!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_run_on_the_defaults_imports_neither(tmp_path: Path) -> None:
    assert _loaded(tmp_path) == []


def test_a_configured_rate_imports_limits(tmp_path: Path) -> None:
    rates = {"rate_limits": {"model_requests_per_minute": 600}}
    assert _loaded(tmp_path, **rates) == ["limits"]
