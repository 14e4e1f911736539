"""The cost benchmark runs end to end on a small workload, and its numbers are coherent."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "cost.py"


def load_bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_cost", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_workload_is_zipf_skewed_and_reproducible() -> None:
    bench = load_bench()
    runs = bench.workload(600, seed=7)
    assert runs == bench.workload(600, seed=7)
    counts: dict[str, int] = {}
    for question, _, tenant in runs:
        counts[question] = counts.get(question, 0) + 1
        assert tenant == "default"
    ranked = sorted(counts.values(), reverse=True)
    assert ranked[0] > 10 * ranked[len(ranked) // 2]  # the head dwarfs the median
    assert {kind for _, kind, _ in runs} == {"simple", "standard", "complex"}
    assert len({t for _, _, t in bench.workload(600, seed=7, tenants=3)}) == 3


@pytest.mark.asyncio
async def test_tiers_and_caches_cut_cost(tmp_path: Path) -> None:
    bench = load_bench()
    runs = bench.workload(80, seed=3)
    rows = []
    for config in ("baseline", "tiers", "tiers+caches"):
        outcome = await bench.run_config(config, runs, latency_s=0.0, concurrency=4, home=tmp_path)
        rows.append(outcome.row())
    base, tiers, cached = rows
    assert all(r["success_pct"] == 100.0 and r["runs"] == 80 for r in rows)
    assert base["model_calls"] == {"standard": sum(tiers["model_calls"].values())}
    assert tiers["model_calls"]["simple"] > 0 and tiers["model_calls"]["complex"] > 0
    assert tiers["cost_per_run_usd"] < 0.9 * base["cost_per_run_usd"]
    assert cached["cost_per_run_usd"] < 0.6 * tiers["cost_per_run_usd"]
    assert cached["hit_rates"]["run"] > 0.3
    assert cached["cached_p50_ms"] is not None and cached["cached_p50_ms"] < 5.0
    assert "| tiers+caches |" in bench.table(rows)
