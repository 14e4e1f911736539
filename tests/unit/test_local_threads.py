"""The local server's default thread count: every core, or one on an already busy machine."""

from __future__ import annotations

import os

import pytest

from keel.models.local import ServerOptions


@pytest.mark.parametrize(
    ("cores", "load", "threads"),
    [(2, 0.3, 2), (2, 1.9, 2), (2, 2.0, 1), (2, 21.0, 1), (16, 9.0, 8), (16, 17.0, 1)],
)
def test_threads_follow_the_cores_unless_the_machine_is_busy(
    monkeypatch: pytest.MonkeyPatch, cores: int, load: float, threads: int
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)))
    monkeypatch.setattr(os, "getloadavg", lambda: (load, 0.0, 0.0))
    assert ServerOptions().n_threads == threads
    assert ServerOptions(n_threads=3).n_threads == 3  # KEEL_LOCAL__THREADS wins
