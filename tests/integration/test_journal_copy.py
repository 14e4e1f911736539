"""`ToolJournal.copy_thread` gives a copied thread the source's journal records under its own
keys, on every journal (memory, SQLite, Postgres)."""

from __future__ import annotations

import uuid

from keel.checkpoints import open_storage
from keel.journal import JournalEntry, ToolJournal


async def _record(journal: ToolJournal, key: str, result: str | None, attempt: int = 0) -> None:
    await journal.start(key, tool="pay", arguments='{"amount": 5}', run_id="r1", attempt=attempt)
    if result is not None:
        await journal.finish(key, status="completed", result=result)


async def test_the_copy_answers_with_the_sources_records(checkpoint_url: str) -> None:
    tag = uuid.uuid4().hex[:8]
    src, dst, other = f"src-{tag}", f"dst-{tag}", f"other-{tag}"
    async with open_storage(checkpoint_url) as storage:
        journal = storage.journal
        await _record(journal, f"{src}:p1", "paid 5")
        await _record(journal, f"{src}:p2", None, attempt=1)  # outcome unknown
        await _record(journal, f"{other}:p1", "paid 9")
        before = [await journal.get(f"{src}:{c}") for c in ("p1", "p2")]

        assert await journal.copy_thread(src, dst) == 2

        copied = await journal.get(f"{dst}:p1")
        assert copied == JournalEntry(
            f"{dst}:p1", "completed", "pay", '{"amount": 5}', "paid 5", "r1"
        )
        pending = await journal.get(f"{dst}:p2")
        assert pending is not None and pending.status == "started" and pending.attempt == 1
        assert [await journal.get(f"{src}:{c}") for c in ("p1", "p2")] == before
        mine = await journal.get(f"{other}:p1")
        assert mine is not None and mine.result == "paid 9"
        assert await journal.get(f"{dst}:p3") is None
        assert await journal.copy_thread(f"none-{tag}", f"dst2-{tag}") == 0

        # the copy is the target's own: finishing it there leaves the source's record alone
        await journal.finish(f"{dst}:p2", status="completed", result="paid on the copy")
        source_p2 = await journal.get(f"{src}:p2")
        assert source_p2 is not None and source_p2.status == "started"
        assert await journal.delete_threads([dst]) == 2
        assert await journal.get(f"{src}:p1") == before[0]
