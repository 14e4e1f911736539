"""The chaos benchmark runs end to end (a few tasks), and Keel recovers where it should."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.notebook_runner import restore_logging  # noqa: F401  (autouse)

BENCH = Path(__file__).resolve().parents[2] / "bench" / "chaos.py"


def load_bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_chaos", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.asyncio
async def test_bench_compares_both_agents_on_the_same_faults(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench = load_bench()
    faults = "rate_limit,server_error,reset,malformed_args,empty,unknown_tool"
    code = await bench.main(["--tasks", "6", "--rate", "0.5", "--seed", "2", "--faults", faults])
    text = capsys.readouterr().out
    assert code == 0
    assert "| Keel | 100.0 % |" in text and "| LangGraph create_agent |" in text
    assert "faults met — Keel: {" in text
