"""The service processes' garbage-collector settings."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from keel.config import load_settings
from keel.errors import ConfigError
from keel.runtime.gc_tuning import freeze_startup_objects, tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


def test_the_first_generation_threshold_is_raised_and_the_others_kept(restore_gc: None) -> None:
    gc.set_threshold(700, 10, 10)
    tune_gc(load_settings().service.gc_gen0_threshold)
    assert gc.get_threshold() == (50_000, 10, 10)


def test_zero_keeps_pythons_default(restore_gc: None) -> None:
    gc.set_threshold(700, 10, 10)
    tune_gc(load_settings(service={"gc_gen0_threshold": 0}).service.gc_gen0_threshold)
    assert gc.get_threshold() == (700, 10, 10)


def test_a_negative_threshold_is_refused() -> None:
    with pytest.raises(ConfigError, match="KEEL_SERVICE__GC_GEN0_THRESHOLD"):
        load_settings(service={"gc_gen0_threshold": -1})


def test_startup_objects_are_frozen(restore_gc: None) -> None:
    gc.unfreeze()
    kept = [object() for _ in range(10)]
    freeze_startup_objects()
    assert gc.get_freeze_count() >= len(kept)
