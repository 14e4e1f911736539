"""The chaos benchmark runs end to end (a few tasks), and Keel recovers where it should."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from keel.testing.chaos import ChaosServer, FaultPlan
from keel.testing.chaos_tasks import arithmetic_tasks, solve_task

BENCH = Path(__file__).resolve().parents[2] / "bench" / "chaos.py"


def load_bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_chaos", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.asyncio
async def test_bench_compares_both_agents_on_the_same_faults(tmp_path: Path) -> None:
    bench = load_bench()
    tasks = arithmetic_tasks(6, seed=2)
    kinds = ("rate_limit", "server_error", "reset", "malformed_args", "empty", "unknown_tool")
    plan = FaultPlan(rate=0.5, seed=2, kinds=kinds)
    with ChaosServer(solve_task, faults=plan) as server:
        keel = await bench.run_keel(server, tasks, tmp_path / "home")
        keel_faults = sum(server.stats.faults.values())
        server.reset(plan)
        base = await bench.run_baseline(server, tasks)
    assert keel_faults > 0
    assert keel.row()["success"] == 100.0
    assert len(base.outcomes) == 6
    text = bench.table([keel, base], plan)
    assert "| Keel | 100.0 % |" in text and "| create_agent |" in text
