"""`RunResult.metadata` is a typed, frozen `RunMetadata`; its JSON (`keel run --json`,
`RunResult.to_dict()`) keeps the keys it had as a dict. `UsageError` has its own code."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from keel.config import load_settings
from keel.errors import ErrorCode, UsageError
from keel.runtime import open_agent
from keel.types import RunMetadata, RunResult

JSON_KEYS = [
    "run_id",
    "model",
    "mode",
    "tenant",
    "tier",
    "iterations",
    "model_calls",
    "total_tokens",
    "total_cost",
    "execution_time",
    "error_code",
    "trace",
    "pending",
]
"""The metadata keys `keel run --json` printed before the metadata was typed."""


async def test_a_run_reports_typed_metadata_with_the_same_json_keys(tmp_path: Any) -> None:
    settings = load_settings(model="scripted:echo", checkpoint_url="memory://", home=tmp_path)
    async with open_agent(settings) as agent:
        result = await agent.arun("hello there", tenant="acme")
    meta = result.metadata
    assert isinstance(meta, RunMetadata)
    assert meta.tenant == "acme" and meta.model == "scripted:echo"
    assert meta.model_calls == 1 and meta.iterations == 1
    assert meta.trace and meta.trace[0]["node"] == "reason"
    with pytest.raises(dataclasses.FrozenInstanceError):
        meta.total_cost = 1.0  # type: ignore[misc]
    printed = json.loads(json.dumps(result.to_dict(), default=str))
    assert list(printed["metadata"]) == JSON_KEYS
    assert printed["metadata"]["run_id"] == meta.run_id
    assert list(printed) == [
        "output",
        "success",
        "error",
        "thread_id",
        "metadata",
        "error_code",
        "status",
        "degraded",  # added: the fallback's direct answer, told apart from a normal one
    ]
    assert printed["degraded"] is False


def test_a_cache_hit_says_so_in_json() -> None:
    hit = RunResult("a", True, None, "t", RunMetadata(cache="hit", cached_from_run="r1"))
    meta = hit.to_dict()["metadata"]
    assert meta["cache"] == "hit" and meta["cached_from_run"] == "r1"


async def test_an_empty_question_is_a_usage_error_not_a_model_error(tmp_path: Any) -> None:
    assert UsageError("x").code is ErrorCode.USAGE_INVALID == "usage_invalid"
    settings = load_settings(model="scripted:echo", checkpoint_url="memory://", home=tmp_path)
    async with open_agent(settings) as agent:
        with pytest.raises(UsageError) as caught:
            await agent.arun("   ")
    assert caught.value.code == "usage_invalid"
