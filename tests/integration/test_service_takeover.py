"""A worker taking over a run continues it from what the dead worker saved.

The hard case: the worker died after a step's task results were saved but before the
step's checkpoint. LangGraph then shows no `next` (only `tasks`), which must not read as
"the graph finished".
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from keel.config import Settings
from keel.runtime import open_agent
from keel.server.runs import RunManager
from keel.server.store import Store
from tests.integration.service_server import pending_run
from tests.sales_truth import SALES_QUESTION


class Crash(BaseException):
    """Stands in for the worker process dying."""


async def test_a_run_cut_between_task_results_and_checkpoint_is_continued(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_factory(model="scripted:sales")
    store = Store.open(f"sqlite:///{tmp_path / 'service.sqlite'}")
    await store.migrate()
    try:
        async with open_agent(settings) as agent:
            thread_id, run_id = await pending_run(
                store,
                {
                    "input": {"messages": [{"role": "user", "content": SALES_QUESTION}]},
                    "role": "admin",
                },
            )
            saver: Any = agent.graph.checkpointer
            put, puts = saver.aput, 0

            async def dies_on_the_second_checkpoint(*args: Any) -> Any:
                nonlocal puts
                puts += 1
                if puts == 2:  # the input's checkpoint is saved, then the first step's results
                    raise Crash
                return await put(*args)

            saver.aput = dies_on_the_second_checkpoint
            with pytest.raises(Crash):
                await RunManager(agent, store, settings.service, worker=True).execute_job(run_id)
            saver.aput = put
            snapshot = await agent.graph.aget_state(agent.config(thread_id))
            assert snapshot.values["run_id"] == run_id
            assert not snapshot.next and snapshot.tasks  # what the takeover has to read right
            dead = await store.get_run_any(run_id)
            assert dead is not None and (dead.status, dead.attempt) == ("running", 1)

            await RunManager(agent, store, settings.service, worker=True).execute_job(run_id)

            done = await store.get_run_any(run_id)
            assert done is not None and (done.status, done.attempt) == ("success", 2)
            values = (await agent.graph.aget_state(agent.config(thread_id))).values
            assert "Their total revenue was $" in values["outcome"]["output"]
            humans = [m for m in values["messages"] if m.type == "human"]
            assert len(humans) == 1  # continued, not restarted
    finally:
        await store.close()
