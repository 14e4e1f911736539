"""The agent state's fold (`keel.types`: `fold`, `flat`, `folded_write`) and the folding of a
checkpoint written before it (`keel.graphs.flat_state.fold_checkpoint`)."""

from __future__ import annotations

import copy
from typing import Any

from keel.graphs.flat_state import _flat_payload, fold_checkpoint
from keel.types import CONTROL_KEYS, RUN_KEYS, flat, fold, folded_write, merge_keys

FLAT: dict[str, Any] = {
    "question": "q",
    "run_id": "r1",
    "tenant": "default",
    "signal": "tools",
    "model_spec": "scripted:sales",
    "limits": {"max_iterations": 8},
    "policy": {"tools": ["sql_query"], "approval": []},
    "budget": {"usd": None, "tokens": None, "model_calls": None},
    "deadline": 100.0,
    "iteration": 2,
    "iteration_deadline": None,
    "model_attempt": 1,
    "retry_delay_s": 0.5,
    "tool_retry": {"call_1": "msg_1"},
    "tool_attempt": 0,
    "tried_tiers": ["standard"],
    "repair_attempt": 0,
    "repair_hint": None,
    "rejected_output": None,
    "summary_upto": 0,
}


def test_a_flat_state_folds_into_two_channels_and_back() -> None:
    folded = fold(FLAT)
    assert set(folded) == {"question", "run_id", "tenant", "signal", "run", "control"}
    assert set(folded["run"]) == RUN_KEYS and set(folded["control"]) == CONTROL_KEYS
    assert flat(folded) == FLAT


def test_an_update_without_folded_keys_is_unchanged_and_a_state_without_channels_reads_as_is() -> (
    None
):
    assert fold({"signal": "answer", "answer": "42"}) == {"signal": "answer", "answer": "42"}
    assert flat({"question": "q", "iteration": 3}) == {"question": "q", "iteration": 3}


def test_a_write_replaces_only_the_keys_it_names() -> None:
    before = fold(FLAT)["control"]
    after = merge_keys(before, fold({"iteration": 3, "tool_retry": None})["control"])
    assert after == {**before, "iteration": 3, "tool_retry": None}
    assert merge_keys({}, {"deadline": 1.0}) == {"deadline": 1.0}


def test_a_single_write_to_a_key_stored_alone_before_goes_to_its_channel() -> None:
    assert folded_write("iteration", 4) == ("control", {"iteration": 4})
    assert folded_write("limits", {"x": 1}) == ("run", {"limits": {"x": 1}})
    assert folded_write("messages", []) == ("messages", [])


def _old_checkpoint() -> dict[str, Any]:
    """A checkpoint as Keel wrote it before the fold: a channel per key."""
    values = {k: v for k, v in FLAT.items() if k not in ("tool_retry", "repair_hint")}
    versions = {k: f"a{i % 9 + 1}.tag{i}" for i, k in enumerate(FLAT)}
    versions["iteration"] = "b12.newest"  # compact versions compare by their counter
    versions["limits"] = "00000000000000000000000000000003.0.5"  # a stock version
    versions["budget"] = "b10.x"  # the newest of the run-level keys
    return {
        "v": 4,
        "id": "c1",
        "ts": "",
        "channel_values": values,
        "channel_versions": versions,
        "versions_seen": {"reason": {"branch:to:reason": "a3.z"}},
        "updated_channels": None,
    }


def test_an_old_checkpoint_is_folded_with_each_channel_at_its_newest_keys_version() -> None:
    checkpoint = _old_checkpoint()
    fold_checkpoint(checkpoint)  # type: ignore[arg-type]
    values, versions = checkpoint["channel_values"], checkpoint["channel_versions"]
    assert not (RUN_KEYS | CONTROL_KEYS) & (set(values) | set(versions))
    assert values["control"]["iteration"] == 2 and "tool_retry" not in values["control"]
    assert values["run"]["limits"] == {"max_iterations": 8}
    assert versions["control"] == "b12.newest"
    assert versions["run"] == "b10.x"
    assert checkpoint["versions_seen"] == {"reason": {"branch:to:reason": "a3.z"}}
    assert flat(values) == {k: v for k, v in FLAT.items() if k not in ("tool_retry", "repair_hint")}


def test_folding_a_folded_checkpoint_changes_nothing() -> None:
    checkpoint = _old_checkpoint()
    fold_checkpoint(checkpoint)  # type: ignore[arg-type]
    again = copy.deepcopy(checkpoint)
    fold_checkpoint(again)  # type: ignore[arg-type]
    assert again == checkpoint


def test_every_chunk_holding_state_or_writes_is_flattened() -> None:
    """`values`, `updates`, and inside `checkpoints`, `tasks` and `debug` chunks the state a
    node was given, its writes by channel and a checkpoint's values and tasks; a `custom`
    chunk, whose keys are the user's, is left as it is."""
    state = fold(FLAT)
    assert _flat_payload("values", state) == FLAT
    assert _flat_payload("updates", {"reason": fold({"iteration": 3})}) == {
        "reason": {"iteration": 3}
    }
    custom = {"progress": {"run": {"step": 1}}}
    assert _flat_payload("custom", custom) is custom

    writes = {"signal": "tools", **fold({"iteration": 3, "model_attempt": 0})}
    result = {"id": "t1", "name": "reason", "error": None, "result": writes, "interrupts": []}
    flat_result = {**result, "result": {"signal": "tools", "iteration": 3, "model_attempt": 0}}
    task = {"id": "t1", "name": "reason", "input": state, "triggers": ["branch:to:reason"]}
    assert _flat_payload("tasks", task) == {**task, "input": FLAT}
    assert _flat_payload("tasks", result) == flat_result
    checkpoint = {"values": state, "next": ["act"], "tasks": [result, {"id": "t2", "name": "act"}]}
    assert _flat_payload("checkpoints", checkpoint) == {
        "values": FLAT,
        "next": ["act"],
        "tasks": [flat_result, {"id": "t2", "name": "act"}],
    }
    debug = {"step": 2, "timestamp": "…", "type": "checkpoint", "payload": checkpoint}
    assert _flat_payload("debug", debug)["payload"]["values"] == FLAT
    assert _flat_payload("debug", {**debug, "type": "task", "payload": task})["payload"] == {
        **task,
        "input": FLAT,
    }
    assert (
        _flat_payload("debug", {**debug, "type": "task_result", "payload": result})["payload"]
        == flat_result
    )


def test_a_channel_written_twice_in_a_step_reads_as_its_keys_the_later_write_winning() -> None:
    """LangGraph gives a channel written more than once in a step as `{"$writes": [...]}`."""
    twice = {"control": {"$writes": [{"iteration": 1, "tool_attempt": 2}, {"iteration": 2}]}}
    task = {"id": "t", "name": "act", "result": twice}
    assert _flat_payload("tasks", task)["result"] == {"iteration": 2, "tool_attempt": 2}
