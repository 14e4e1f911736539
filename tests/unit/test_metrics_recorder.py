"""The metrics stand-in of a one-shot `keel run` (`keel.observability.recorder`) offers every
recorder the recording modules call, each one of `keel.observability.metrics`."""

from __future__ import annotations

import ast
import inspect

from keel.observability import events, metrics, observer
from keel.observability.recorder import RECORDERS

TYPES = {"Outcome"}
"""Names of `metrics` used in annotations only (never evaluated at run time)."""


def test_the_stand_in_has_every_recorder_the_recording_modules_call() -> None:
    used = {
        node.attr
        for module in (events, observer)
        for node in ast.walk(ast.parse(inspect.getsource(module)))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "metrics"
    }
    assert used - TYPES <= set(RECORDERS)
    assert all(callable(getattr(metrics, name)) for name in RECORDERS)
