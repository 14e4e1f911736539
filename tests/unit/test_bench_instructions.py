"""bench/instructions.py: callgrind's total is read from its report, and a child process runs
the workload it is asked for (the callgrind runs themselves take minutes: not run here)."""

from __future__ import annotations

import gc

import pytest

from bench import instructions


def test_reads_callgrind_total() -> None:
    report = "==4242== Events    : Ir\n==4242== Collected : 6,183,006,428\n==4242==\n"
    assert instructions.collected(report) == 6_183_006_428
    assert instructions.collected("==1== Collected : 5668996460") == 5_668_996_460
    with pytest.raises(RuntimeError, match="no callgrind total"):
        instructions.collected("valgrind: command not found")


@pytest.mark.parametrize("side", ["keel", "textbook"])
@pytest.mark.parametrize("at_once", [False, True])
async def test_child_runs_the_workload(side: str, at_once: bool) -> None:
    # the runner raises unless the scripted work was done
    await instructions.child(side, 2, at_once=at_once)  # type: ignore[arg-type]


def test_high_must_exceed_low() -> None:
    with pytest.raises(SystemExit):
        instructions.main(["--low", "5", "--high", "5"])


def test_child_reports_its_full_collections(capsys: pytest.CaptureFixture[str]) -> None:
    """The parent reads how many full collections fell among the measured runs from this."""
    assert instructions.main(["--child", "textbook", "1"]) == 0
    found = instructions._FULL.search(capsys.readouterr().err)
    assert found is not None
    assert int(found.group(1)) == gc.get_stats()[2]["collections"]


def test_each_side_is_the_difference_of_its_own_two_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The processes run side by side; each side's figure still pairs its own short and
    long process (here a side's process costs its start-up plus 7 or 11 per run)."""
    cost = {"keel": (1_000, 11), "textbook": (5_000, 7)}

    def fake(side: str, runs: int, *, at_once: bool = False) -> tuple[int, int]:
        start, each = cost[side]
        return start + each * runs, runs // 10 if at_once else 0

    monkeypatch.setattr(instructions, "instructions", fake)
    found = instructions.per_run_of(["textbook", "keel"], 5, 25, at_once=True)
    assert found == {"textbook": (7.0, 2), "keel": (11.0, 2)}
