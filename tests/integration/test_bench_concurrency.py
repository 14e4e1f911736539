"""bench/concurrency.py runs end to end with tiny numbers (no timing is asserted: only that
both sides' children did every run's scripted work and the report has its ratios)."""

from __future__ import annotations

import re

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


def test_a_child_that_misses_the_scripted_work_fails_the_benchmark(tmp_path: object) -> None:
    """A child's failed runs are not averaged away: the benchmark stops with them."""
    with pytest.raises(RuntimeError, match="runs failed"):
        concurrency.check({"side": "keel", "failed": 3, "first_failure": "AssertionError()"})
