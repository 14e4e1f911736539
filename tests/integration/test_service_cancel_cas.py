"""A cancel that lands just after a worker took the run's job: the cancel wins cleanly.

The API records `interrupted` and asks the queue to abort the job; the worker had already
read the run as `pending`. It must not write `running` over the cancel and run the graph
anyway (which ended such runs `success`, or back in `pending` once the abort arrived).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from keel.config import Settings
from keel.runtime import open_agent
from keel.server.runs import RunManager
from keel.server.store import Store
from tests.integration.service_server import pending_run


async def test_a_cancel_after_the_worker_read_the_run_wins(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_factory(model="scripted:sales")
    store = Store.open(f"sqlite:///{tmp_path / 'service.sqlite'}")
    await store.migrate()
    try:
        async with open_agent(settings) as agent:
            thread_id, run_id = await pending_run(store, {"input": {"question": "hi"}})
            read = store.get_run_any

            async def then_cancelled(wanted: str) -> Any:
                found = await read(wanted)
                # the API's cancel, right after the worker's read under the thread fence
                await store.set_run_status(run_id, "interrupted", error="cancelled by the client")
                return found

            store.get_run_any = then_cancelled  # type: ignore[method-assign]
            await RunManager(agent, store, settings.service, worker=True).execute_job(
                run_id, thread_id
            )
            store.get_run_any = read  # type: ignore[method-assign]
            done = await store.get_run_any(run_id)
            assert done is not None and done.status == "interrupted", done
            assert done.error == "cancelled by the client"
            thread = await store.get_thread(thread_id, "default")
            assert thread is not None and thread.status != "busy"
            state = await agent.graph.aget_state(agent.config(thread_id))
            assert not state.values, "the graph did not run"
    finally:
        await store.close()
