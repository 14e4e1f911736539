"""bench/graph_cpu.py runs end to end with tiny numbers (no timing is asserted: only that
every side did the same work and the report has its ratios and counts)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import graph_cpu
from bench.workload import SIDES, new_thread, runner


@pytest.mark.parametrize("side", SIDES)
async def test_every_side_does_the_scripted_work(side: str, tmp_path: Path) -> None:
    """Each side's run makes six model calls and ends with the scripted answer (the
    runner raises otherwise), on the memory saver and on SQLite."""
    for url in ("memory://", f"sqlite:///{tmp_path / 'cp.sqlite'}"):
        async with runner(side, url, tmp_path / "home") as run:  # type: ignore[arg-type]
            await run(new_thread())


async def test_the_report_has_ratios_and_postgres_counts(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await graph_cpu.main(["memory", "postgres"], 1, 2, 1, 0) == 0
    out = capsys.readouterr().out
    ratios = re.findall(r"Keel / (textbook|create_agent)\s+([\d.]+)–([\d.]+)", out)
    assert len(ratios) == 4, out  # two raw sides, two savers, a range over two repeats
    assert all(float(low) > 0 for _, low, _ in ratios)
    counts = dict(
        re.findall(r"^  (keel|textbook|create_agent)\s+[\d.]+\s+[\d.]+\s+([\d.]+)$", out, re.M)
    )
    assert set(counts) == set(SIDES), out
    assert all(float(rows) > 0 for rows in counts.values()), out
    assert "load average" in out
