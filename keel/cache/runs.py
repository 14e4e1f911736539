"""The whole-run cache: a repeated question answered without running the graph.

The key is the normalized question, the tenant and a fingerprint of everything else the
answer depends on (the tool set's version and the model specs). Only successful runs are
stored, and not degraded ones (a fallback's tool-free answer is not worth repeating). A
cached answer comes back as a new `RunResult` marked `metadata.cache == "hit"` with zero
cost; it writes no checkpoint (there is nothing to resume).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from keel.cache.caches import Caches, normalize_question
from keel.types import RunMetadata, RunResult

__all__ = ["cached_run", "lookup_run", "remember_run", "run_cache_on", "run_fingerprint"]

KEPT_METADATA = ("model", "mode", "tier", "iterations", "total_tokens", "run_id")


def run_fingerprint(tool_version: str, model_specs: Iterable[str], system_prompt: str) -> str:
    """What besides the question decides the answer: tools, models, instructions.

    Computed once per distinct input (an agent asks before every run, with the same tools,
    models and instructions each time)."""
    return _fingerprint(tool_version, tuple(model_specs), system_prompt)


@functools.lru_cache(maxsize=64)
def _fingerprint(tool_version: str, model_specs: tuple[str, ...], system_prompt: str) -> str:
    blob = "\x1f".join([tool_version, *model_specs, system_prompt])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


async def lookup_run(
    caches: Caches | None, tenant: str, question: str, fingerprint: str, thread_id: str
) -> RunResult | None:
    if caches is None:
        return None
    started = time.perf_counter()
    found: dict[str, Any] | None = await caches.run_result(tenant, question, fingerprint)
    if found is None:
        return None
    kept = found.get("metadata", {})
    metadata = RunMetadata(
        **{k: kept[k] for k in KEPT_METADATA if kept.get(k) is not None},
        cache="hit",
        tenant=tenant,
        cached_from_run=kept.get("run_id"),
        execution_time=round(time.perf_counter() - started, 6),
    )
    return RunResult(
        output=found["output"], success=True, error=None, thread_id=thread_id, metadata=metadata
    )


async def remember_run(
    caches: Caches | None, tenant: str, question: str, fingerprint: str, result: RunResult
) -> None:
    if caches is None or not result.success or result.degraded or result.status != "finished":
        return
    payload = {
        "output": result.output,
        "metadata": {k: getattr(result.metadata, k) for k in KEPT_METADATA},
    }
    await caches.store_run_result(tenant, question, fingerprint, payload)


_IN_FLIGHT: dict[tuple[int, str, str, str], asyncio.Event] = {}


def run_cache_on(caches: Caches | None) -> bool:
    """Whether `cached_run` would look the answer up (else it only runs)."""
    return caches is not None and caches.enabled("run")


async def cached_run(
    caches: Caches | None,
    tenant: str,
    question: str,
    fingerprint: str,
    thread_id: str,
    run: Callable[[], Awaitable[RunResult]],
) -> RunResult:
    """The cached answer, or `run()` (then cached if it succeeded).

    Identical questions arriving while the first is still running wait for it instead of
    all running (single flight, per process), then take its cached answer if it succeeded.
    """
    if not run_cache_on(caches):
        return await run()
    found = await lookup_run(caches, tenant, question, fingerprint, thread_id)
    if found is not None:
        return found
    key = (id(caches), tenant, normalize_question(question), fingerprint)
    leader = _IN_FLIGHT.get(key)
    if leader is not None:
        await leader.wait()
        found = await lookup_run(caches, tenant, question, fingerprint, thread_id)
        if found is not None:
            return found
    done = _IN_FLIGHT.setdefault(key, asyncio.Event())
    try:
        result = await run()
        await remember_run(caches, tenant, question, fingerprint, result)
        return result
    finally:
        if _IN_FLIGHT.get(key) is done:
            del _IN_FLIGHT[key]
        done.set()
