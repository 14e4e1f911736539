"""Garbage-collector settings for the long-running service processes (`serve`, `worker`),
and the start-up freeze a `keel run` also uses.

A run allocates many short-lived containers (messages, state dicts, SQL rows). With
Python's default first-generation threshold (700) the cyclic collector runs every few
hundred allocations and took about a tenth of a worker's CPU in `bench/service.py`. A larger
threshold collects the same garbage in fewer passes; freezing what start-up allocated
(modules, the compiled graph, pools) keeps it out of every later full collection.
"""

from __future__ import annotations

import gc

__all__ = ["freeze_startup_objects", "tune_gc"]


def tune_gc(gen0_threshold: int) -> None:
    """Collect the youngest generation every `gen0_threshold` allocations (0: Python's
    default); the older generations keep their ratios."""
    if gen0_threshold <= 0:
        return
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)


def freeze_startup_objects() -> None:
    """Move everything allocated so far out of the collector's sight (call once start-up
    is done): long-lived objects are no longer traversed by each full collection."""
    gc.collect()
    gc.freeze()
