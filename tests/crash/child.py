"""The program the crash test runs in a subprocess: a real Keel agent on Postgres.

The agent (a scripted model, so it is deterministic) makes three side effects — one call,
then two calls in parallel — with a non-idempotent tool that appends a line to a file, then
answers. A *crash point* makes the process SIGKILL itself at an exact moment: inside a model
call, inside the tool before or after its write, right after a journal record, right before
or after a checkpoint write. Each process first resumes the threads it is given (the runs the
previous process left behind), then starts its own run with its crash point armed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from keel.checkpoints.journal import PostgresJournal
from keel.checkpoints.postgres_saver import BatchedPostgresSaver
from keel.config import load_settings
from keel.runtime import open_agent
from keel.testing.scripted import FunctionModel
from keel.tools.registry import Reconciled, ToolContext, ToolRegistry, tool

QUESTION = "Store a, then b and c."
ANSWER = "done: stored a; stored b; stored c"


@dataclass
class Arm:
    """Where this process dies: the `count`-th event of `kind` after the resumes."""

    kind: str | None = None
    count: int = 0
    seen: dict[str, int] | None = None

    def hit(self, kind: str) -> None:
        if self.kind is None or self.seen is None:
            return
        n = self.seen.get(kind, 0)
        self.seen[kind] = n + 1
        if kind == self.kind and n == self.count:
            os.kill(os.getpid(), signal.SIGKILL)


ARM = Arm()


def _script(messages: list[BaseMessage], info: Any) -> AIMessage | str:
    ARM.hit("model")
    turn = sum(isinstance(m, AIMessage) for m in messages)
    if turn == 0:
        tags = ["a"]
    elif turn == 1:
        tags = ["b", "c"]
    else:
        seen = [str(m.content) for m in messages if isinstance(m, ToolMessage)]
        return "done: " + "; ".join(seen)
    calls = [
        {"name": "append_effect", "args": {"tag": t}, "id": f"call-{turn}-{i}"}
        for i, t in enumerate(tags)
    ]
    return AIMessage(content="", tool_calls=calls)


def _tools(effects: Path) -> Any:
    def reconcile(key: str) -> Reconciled:
        for line in effects.read_text().splitlines() if effects.exists() else []:
            done_key, _, tag = line.partition(" ")
            if done_key == key:
                return Reconciled.done(f"stored {tag}")
        return Reconciled.not_done()

    @tool(reconcile=reconcile)
    def append_effect(tag: str, ctx: ToolContext) -> str:
        """Append one line to the effects file (a side effect that must happen once)."""
        ARM.hit("tool_before")
        with effects.open("a") as f:
            f.write(f"{ctx.idempotency_key} {tag}\n")
            f.flush()
            os.fsync(f.fileno())
        ARM.hit("tool_after")
        return f"stored {tag}"

    return FunctionModel(fn=_script, model_name="scripted:crash"), ToolRegistry.of([append_effect])


def _patch_storage() -> None:
    """Crash points around checkpoint and journal writes (this process only)."""
    aput, aput_writes, finish = (
        BatchedPostgresSaver.aput,
        BatchedPostgresSaver.aput_writes,
        PostgresJournal.finish,
    )

    async def put(self: Any, *args: Any, **kwargs: Any) -> Any:
        ARM.hit("put_before")
        out = await aput(self, *args, **kwargs)
        ARM.hit("put_after")
        return out

    async def put_writes(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = await aput_writes(self, *args, **kwargs)
        ARM.hit("writes_after")
        return out

    async def journal_finish(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = await finish(self, *args, **kwargs)
        ARM.hit("journal_after")
        return out

    BatchedPostgresSaver.aput = put  # type: ignore[method-assign]
    BatchedPostgresSaver.aput_writes = put_writes  # type: ignore[method-assign]
    PostgresJournal.finish = journal_finish  # type: ignore[method-assign]


async def _main(job: dict[str, Any]) -> None:
    _patch_storage()
    if job.get("quiet"):
        import logging

        import structlog

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    out = Path(job["results"])
    model, tools = _tools(Path(job["effects"]))
    settings = load_settings(
        model="scripted:echo",
        checkpoint_url=job["pg_url"],
        durability=job.get("durability", "sync"),
        home=job["home"],
        retry={"initial_s": 0.0, "max_s": 0.0},
        checkpoint_pool={"max_size": 3},
    )
    async with open_agent(settings, model=model, tools=tools) as agent:
        for thread_id in job["resume"]:
            result = await agent.aresume(thread_id)
            (out / f"{thread_id}.json").write_text(json.dumps(result.to_dict(), default=str))
        if job.get("thread"):
            ARM.kind, ARM.count, ARM.seen = job["kind"], job["count"], {}
            result = await agent.arun(QUESTION, thread_id=job["thread"])
            ARM.kind = None
            (out / f"{job['thread']}.json").write_text(json.dumps(result.to_dict(), default=str))


def main(job: dict[str, Any]) -> None:
    """Entry point of one subprocess (a multiprocessing target)."""
    try:
        asyncio.run(_main(job))
    except BaseException:
        import traceback

        name = job.get("thread") or "final"
        (Path(job["results"]) / f"{name}.error").write_text(traceback.format_exc())
        raise
