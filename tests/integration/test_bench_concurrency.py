"""bench/concurrency.py runs end to end with tiny numbers (no timing is asserted: only that
both sides' children did every run's scripted work and the report has its ratios)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bench import concurrency


async def test_the_report_has_throughput_and_memory_per_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await concurrency.main(["memory"], runs=6, latency_ms=20, repeat=2) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"repeat \d: runs/s keel +[\d.]+ raw +[\d.]+ \(ratio [\d.]+\)", out)) == 2
    assert re.search(r"throughput Keel / raw +[\d.]+–[\d.]+", out), out
    assert re.search(r"RSS per run above raw +[+-]\d+–[+-]\d+ KB", out), out
    assert "load average" in out


async def test_both_sides_can_run_with_the_services_collector_settings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        await concurrency.main(["memory"], runs=6, latency_ms=20, repeat=1, gc_mode="service") == 0
    )
    out = capsys.readouterr().out
    assert "collector settings: service on both sides" in out
    assert re.search(r"repeat 1: runs/s keel +[\d.]+ raw +[\d.]+ \(ratio [\d.]+\)", out), out


TWO_CORES = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")


@TWO_CORES
async def test_together_runs_both_sides_at_once_each_on_its_own_core(tmp_path: Path) -> None:
    """What each child reports of itself: the one core it was given, and a batch that
    overlaps the other side's (a second a model call: each batch lasts ~6 s, so a child
    slower to start under load still overlaps)."""
    cores = sorted(os.sched_getaffinity(0))[:2]
    keel, raw = await concurrency.measure_pair(
        "memory", 6, 1.0, tmp_path, "default", (cores[1], cores[0])
    )
    assert (keel["side"], raw["side"]) == ("keel", "textbook")
    assert (keel["cpus"], raw["cpus"]) == ([cores[1]], [cores[0]])
    assert keel["batch_s"][0] < raw["batch_s"][1] and raw["batch_s"][0] < keel["batch_s"][1]


@TWO_CORES
async def test_together_swaps_the_cores_every_repeat(capsys: pytest.CaptureFixture[str]) -> None:
    cores = sorted(os.sched_getaffinity(0))[:2]
    assert await concurrency.main(["memory"], runs=6, latency_ms=20, repeat=2, together=True) == 0
    out = capsys.readouterr().out
    assert "both sides at once" in out
    assert f"keel on core {cores[0]}, raw on core {cores[1]}" in out
    assert f"keel on core {cores[1]}, raw on core {cores[0]}" in out
    assert re.search(r"throughput Keel / raw +[\d.]+–[\d.]+", out), out


async def test_one_after_the_other_the_first_side_alternates(tmp_path: Path) -> None:
    """Neither side always goes first (and so always meets the same part of a drifting
    machine's minute): asked for, the second side's batch ends before the first's starts,
    and the results still come back in the pair's order."""
    keel, raw = await concurrency.measure_pair(
        "memory", 4, 0.02, tmp_path, "default", None, second_first=True
    )
    assert (keel["side"], raw["side"]) == ("keel", "textbook")
    assert raw["batch_s"][1] <= keel["batch_s"][0]
    keel, raw = await concurrency.measure_pair("memory", 4, 0.02, tmp_path, "default", None)
    assert keel["batch_s"][1] <= raw["batch_s"][0]


async def test_the_same_side_twice_measures_the_benchs_own_spread(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pair = ("textbook", "textbook")
    assert await concurrency.main(["memory"], runs=4, latency_ms=20, repeat=2, pair=pair) == 0
    out = capsys.readouterr().out
    assert "raw against raw (the same side twice: the bench's own spread)" in out
    assert re.search(r"repeat 2: runs/s raw +[\d.]+ raw +[\d.]+ \(ratio [\d.]+\).*; raw first", out)
    assert re.search(r"throughput raw / raw +[\d.]+–[\d.]+", out), out


def test_a_child_that_misses_the_scripted_work_fails_the_benchmark(tmp_path: object) -> None:
    """A child's failed runs are not averaged away: the benchmark stops with them."""
    with pytest.raises(RuntimeError, match="runs failed"):
        concurrency.check({"side": "keel", "failed": 3, "first_failure": "AssertionError()"})
