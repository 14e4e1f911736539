"""Exactly-once tool effects, human approval, time travel and retention, over every saver."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from keel.checkpoints.retention import RetentionPolicy
from keel.errors import ErrorCode, ThreadNotFoundError, UsageError
from keel.testing.scripted import CallInfo, FunctionModel, ScriptedModel
from keel.tools.registry import Reconciled, ToolContext, ToolRegistry, tool


@pytest.fixture
def tid() -> Callable[[str], str]:
    """Postgres is shared by the session: a test's thread ids get a suffix of their own."""
    suffix = uuid.uuid4().hex[:8]
    return lambda name: f"{name}-{suffix}"


@pytest.fixture
def own_store_url(checkpoint_url: str, tmp_path: Path) -> Iterator[str]:
    """A checkpoint store no other test writes to (retention sees every thread in it)."""
    if not checkpoint_url.startswith("postgresql://"):
        yield checkpoint_url
        return
    from tests.conftest import fresh_database

    with fresh_database("keel_prune") as (url, _):
        yield url


class Crash(BaseException):
    """Stands in for the process dying mid-step."""


def call(name: str, args: dict[str, Any], call_id: str = "c1") -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id}])


def calls(*items: tuple[str, dict[str, Any], str]) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": n, "args": a, "id": i} for n, a, i in items])


async def test_completed_effect_is_reused_when_the_step_is_replayed(
    tid: Callable[[str], str], agent_factory: Any
) -> None:
    """`pay` finishes, its sibling crashes the step: on resume `pay` is not called again."""
    paid: list[tuple[int, str]] = []
    crashes: list[int] = []

    @tool
    def pay(amount: int, ctx: ToolContext) -> str:
        """Pay an amount (a side effect)."""
        paid.append((amount, ctx.idempotency_key))
        return f"paid {amount}"

    @tool(idempotent=True)
    async def lookup(x: int) -> str:
        """Crashes the process the first time."""
        import asyncio

        await asyncio.sleep(0.05)  # let `pay` finish first
        crashes.append(x)
        if len(crashes) == 1:
            raise Crash()
        return "found"

    model = ScriptedModel([calls(("pay", {"amount": 5}, "p1"), ("lookup", {"x": 1}, "l1")), "ok"])
    async with agent_factory(model, tools=ToolRegistry.of([pay, lookup])) as agent:
        with pytest.raises(Crash):
            await agent.arun("pay", thread_id=tid("t-pay"))
        result = await agent.aresume(tid("t-pay"))
    assert result.success and result.output == "ok"
    assert paid == [(5, f"{tid('t-pay')}:p1")], "the completed payment is reused, not repeated"
    assert "paid 5" in result.metadata.trace[1]["observation"]


@pytest.mark.parametrize("happened", [True, False])
async def test_reconcile_decides_an_unknown_outcome(
    tid: Callable[[str], str], agent_factory: Any, happened: bool
) -> None:
    sent: list[str] = []
    asked: list[str] = []

    def reconcile(key: str) -> Reconciled:
        asked.append(key)
        return Reconciled.done("sent (reconciled)") if happened else Reconciled.not_done()

    @tool(reconcile=reconcile)
    def send(to: str) -> str:
        """Send a message; dies the first time, after sending."""
        sent.append(to)
        if len(sent) == 1:
            raise Crash()
        return "sent"

    model = ScriptedModel([call("send", {"to": "bob"}), "done"])
    async with agent_factory(model, tools=ToolRegistry.of([send])) as agent:
        with pytest.raises(Crash):
            await agent.arun("send", thread_id=tid("t-send"))
        result = await agent.aresume(tid("t-send"))
    assert result.success
    assert asked == [f"{tid('t-send')}:c1"]
    observation = result.metadata.trace[1]["observation"]
    if happened:
        assert sent == ["bob"] and observation == "sent (reconciled)"
    else:
        assert sent == ["bob", "bob"] and observation == "sent"


async def test_unknown_outcome_without_reconcile_asks_a_human(
    tid: Callable[[str], str], agent_factory: Any
) -> None:
    sent: list[str] = []

    @tool
    def send(to: str) -> str:
        """Send a message; dies the first time, after sending."""
        sent.append(to)
        if len(sent) == 1:
            raise Crash()
        return "sent"

    model = ScriptedModel([call("send", {"to": "bob"}), "told"])
    async with agent_factory(model, tools=ToolRegistry.of([send])) as agent:
        with pytest.raises(Crash):
            await agent.arun("send", thread_id=tid("t-unknown"))
        paused = await agent.aresume(tid("t-unknown"))
        assert paused.status == "interrupted" and sent == ["bob"], "never re-run blindly"
        [request] = await agent.apending(tid("t-unknown"))
        assert request["kind"] == "outcome_unknown"
        assert request["idempotency_key"] == f"{tid('t-unknown')}:c1"
        assert (await agent.aresume(tid("t-unknown"))).status == "interrupted", "still waiting"
        result = await agent.aapprove(tid("t-unknown"), reject="it already went out")
    assert result.success and result.output == "told"
    assert sent == ["bob"]
    assert "it already went out" in result.metadata.trace[1]["observation"]


@pytest.fixture
def transfers() -> tuple[ToolRegistry, list[dict[str, Any]]]:
    done: list[dict[str, Any]] = []

    @tool(requires_approval=True)
    def transfer(account: str, amount: int) -> str:
        """Move money between accounts."""
        done.append({"account": account, "amount": amount})
        return f"moved {amount} to {account}"

    return ToolRegistry.of([transfer]), done


async def _paused(agent: Any, thread_id: str) -> dict[str, Any]:
    paused = await agent.arun("move money", thread_id=thread_id)
    assert paused.status == "interrupted" and not paused.success
    [request] = await agent.apending(thread_id)
    assert request["kind"] == "approval" and request["tool"] == "transfer"
    assert request["arguments"] == {"account": "A", "amount": 10}
    return request


async def test_approval_approve(
    tid: Callable[[str], str], agent_factory: Any, transfers: Any
) -> None:
    registry, done = transfers
    model = ScriptedModel([call("transfer", {"account": "A", "amount": 10}), "moved"])
    async with agent_factory(model, tools=registry) as agent:
        await _paused(agent, tid("t-ok"))
        assert done == [], "nothing runs before approval"
        result = await agent.aapprove(tid("t-ok"))
        assert await agent.apending(tid("t-ok")) == []
    assert result.success and done == [{"account": "A", "amount": 10}]


async def test_approval_edit_is_validated_then_used(
    tid: Callable[[str], str], agent_factory: Any, transfers: Any
) -> None:
    registry, done = transfers
    model = ScriptedModel([call("transfer", {"account": "A", "amount": 10}), "moved"])
    async with agent_factory(model, tools=registry) as agent:
        await _paused(agent, tid("t-edit"))
        with pytest.raises(UsageError) as bad:
            await agent.aapprove(tid("t-edit"), edit={"account": "A", "amount": "lots"})
        assert "amount" in bad.value.message
        assert len(await agent.apending(tid("t-edit"))) == 1, "a bad edit changes nothing"
        result = await agent.aapprove(tid("t-edit"), edit={"account": "B", "amount": 3})
    assert result.success and done == [{"account": "B", "amount": 3}]
    assert "reviewer changed the arguments" in result.metadata.trace[1]["observation"]


async def test_approval_reject_tells_the_model(
    tid: Callable[[str], str], agent_factory: Any, transfers: Any
) -> None:
    registry, done = transfers
    seen: list[str] = []

    def reply(messages: list[Any], info: Any) -> Any:
        if info.index == 0:
            return call("transfer", {"account": "A", "amount": 10})
        seen.append(str(messages[-1].content))
        return "I will not move it."

    from keel.testing.scripted import FunctionModel

    async with agent_factory(FunctionModel(fn=reply), tools=registry) as agent:
        await _paused(agent, tid("t-no"))
        with pytest.raises(UsageError):
            await agent.aapprove(tid("t-no"), edit={"account": "A", "amount": 1}, reject="no")
        result = await agent.aapprove(tid("t-no"), reject="over the limit")
    assert result.success and done == []
    assert "over the limit" in seen[0]
    assert result.metadata.trace[1]["error_code"] == ErrorCode.TOOL_REJECTED
    with pytest.raises(UsageError) as none:
        async with agent_factory(FunctionModel(fn=reply), tools=registry) as again:
            await again.aapprove(tid("t-never-paused"))
    assert none.value.code == ErrorCode.NO_PENDING_REVIEW


async def test_history_state_and_fork(tid: Callable[[str], str], agent_factory: Any) -> None:
    async with agent_factory() as agent:  # scripted:echo answers "You asked: <question>"
        first = await agent.arun("red", thread_id=tid("t-tt"))
        assert first.output == "You asked: red"
        history = await agent.ahistory(tid("t-tt"))
        assert history[0].next == () and history[-1].source == "input"
        assert [h.step for h in history] == sorted((h.step for h in history), reverse=True)
        start = next(h for h in history if h.next == ("reason",))
        state = await agent.astate(tid("t-tt"), start.checkpoint_id)
        human = state["messages"][0]
        assert isinstance(human, HumanMessage) and human.content == "red"
        forked = await agent.afork(
            tid("t-tt"),
            start.checkpoint_id,
            values={"messages": [HumanMessage("blue", id=human.id)], "question": "blue"},
        )
        assert forked.success and forked.output == "You asked: blue"
        assert (await agent.astate(tid("t-tt")))["answer"] == "You asked: blue"
        assert len(await agent.ahistory(tid("t-tt"))) > len(history), "the old branch is kept"
        with pytest.raises(ThreadNotFoundError):
            await agent.astate(tid("t-tt"), "no-such-checkpoint")
        with pytest.raises(ThreadNotFoundError):
            await agent.ahistory("no-such-thread")


async def test_prune_keeps_last_k_and_drops_idle_threads(
    tid: Callable[[str], str], agent_factory: Any, own_store_url: str
) -> None:
    effects: list[str] = []

    @tool
    def note(text: str) -> str:
        """Write a note (a side effect)."""
        effects.append(text)
        return "noted"

    model = ScriptedModel(
        [
            call("note", {"text": "x"}, "n1"),
            "one",
            "two",
            "idle",
            call("note", {"text": "y"}, "n2"),
            "3",
        ]
    )
    store = agent_factory(model, tools=ToolRegistry.of([note]), checkpoint_url=own_store_url)
    async with store as agent:
        await agent.arun("first", thread_id=tid("t-keep"))
        await agent.arun("second", thread_id=tid("t-keep"))
        await agent.arun("third", thread_id=tid("t-idle"))
        before = len(await agent.ahistory(tid("t-keep")))
        report = await agent.aprune(RetentionPolicy(keep_last=2))
        assert report.checkpoints_deleted >= before - 2 and report.threads_dropped == 0
        assert len(await agent.ahistory(tid("t-keep"))) == 2
        assert (await agent.astate(tid("t-keep")))["answer"] == "two", "the current state survives"
        third = await agent.arun("fourth", thread_id=tid("t-keep"))
        assert third.success and third.output == "3" and effects == ["x", "y"]
        assert (await agent.result(tid("t-keep"))).output == "3"
        gone = await agent.aprune(RetentionPolicy(idle_s=0.0))
        assert gone.threads_dropped == 2 and gone.journal_rows_deleted == 2
        assert agent.storage is not None
        assert await agent.storage.journal.get(f"{tid('t-keep')}:n1") is None
        with pytest.raises(ThreadNotFoundError):
            await agent.ahistory(tid("t-idle"))
    with pytest.raises(UsageError):
        RetentionPolicy(keep_last=0)


async def test_storage_per_turn_is_flat_and_less_with_retention(
    tid: Callable[[str], str], agent_factory: Any, checkpoint_url: str, own_store_url: str
) -> None:
    """A checkpoint stores only what its step wrote (`messages` and `trace` are delta
    channels), so unpruned storage grows by the same amount every turn; keeping the last K
    checkpoints (the oldest kept one holding the whole conversation) adds less, and no more
    in later turns than in early ones, for any K."""
    from keel.checkpoints.retention import storage_bytes

    @tool(idempotent=True)
    def lookup(topic: str) -> str:
        """Look a topic up."""
        return f"{topic}: 42 rows, total 1234.50"

    # every turn's text is the same length (`02d`): turn 10's two-digit numbers in five places
    # added ~50 bytes to a pruned Postgres turn of ~220, enough to fail `drift` by itself
    def script(messages: list[Any], info: CallInfo) -> AIMessage | str:
        turn = sum(isinstance(m, HumanMessage) for m in messages)
        if isinstance(messages[-1], ToolMessage):
            return f"Turn {turn:02d}: 42 rows with a total of 1234.50."
        return call("lookup", {"topic": f"topic {turn:02d}"}, f"t{turn:02d}")

    async def added_per_turn(agent: Any, thread_id: str, keep: int | None) -> list[int]:
        """Bytes each of turns 3..10 adds (turn 2 may still fill the first K checkpoints)."""
        sizes = []
        for turn in range(1, 11):
            result = await agent.arun(f"question number {turn:02d}", thread_id=thread_id)
            assert result.success, result.error
            if keep:
                await agent.aprune(RetentionPolicy(keep_last=keep))
            sizes.append(await storage_bytes(agent.storage, thread_id))
        return [b - a for a, b in itertools.pairwise(sizes)][1:]

    def drift(added: list[int]) -> float:
        """How much the per-turn increment changes from the first third to the last."""
        third = len(added) // 3
        return sum(added[-third:]) / sum(added[:third])

    model = FunctionModel(fn=script)
    async with agent_factory(
        model, tools=ToolRegistry.of([lookup]), checkpoint_url=own_store_url
    ) as agent:
        if checkpoint_url.startswith("memory://"):
            with pytest.raises(UsageError):
                await storage_bytes(agent.storage)
            return
        unpruned = await added_per_turn(agent, tid("t-all"), None)
        pruned = {k: await added_per_turn(agent, tid(f"t-keep{k}"), k) for k in (5, 1)}
    # a turn adds the same bytes, give or take a base: Keel's savers store one every 8
    # checkpoints (~0.6 KB, `keel.checkpoints.bases`), every other turn here
    assert max(unpruned) <= 1.1 * min(unpruned) + 1024, unpruned
    assert 0.95 < drift(unpruned) < 1.05, unpruned
    for keep, added in pruned.items():
        # The kept checkpoint's whole conversation is stored compressed, and compresses
        # better as it grows: a pruned turn adds the same or less than the turn before.
        assert drift(added) < 1.1, (keep, added)
        assert max(added) < min(unpruned) / 2, (keep, added, unpruned)


async def test_a_recorded_failure_is_replayed_not_rerun(
    tid: Callable[[str], str], agent_factory: Any
) -> None:
    """A side-effecting call that failed is not tried again when its step is replayed: the
    model sees the same error (a refusal stays a refusal it can fix)."""
    from keel.errors import ToolInputError

    attempts: list[str] = []
    crashes: list[int] = []

    @tool
    def charge(card: str) -> str:
        """Charge a card; refuses unknown cards."""
        attempts.append(card)
        raise ToolInputError(f"unknown card {card}")

    @tool(idempotent=True)
    async def lookup(x: int) -> str:
        """Crashes the process the first time, after `charge` has failed."""
        import asyncio

        await asyncio.sleep(0.05)
        crashes.append(x)
        if len(crashes) == 1:
            raise Crash()
        return "found"

    model = ScriptedModel(
        [calls(("charge", {"card": "X"}, "ch1"), ("lookup", {"x": 1}, "l1")), "gave up"]
    )
    thread = tid("t-fail")
    async with agent_factory(model, tools=ToolRegistry.of([charge, lookup])) as agent:
        with pytest.raises(Crash):
            await agent.arun("charge", thread_id=thread)
        result = await agent.aresume(thread)
    assert result.success and result.output == "gave up"
    assert attempts == ["X"]
    step = result.metadata.trace[1]
    assert step["error_code"] == ErrorCode.TOOL_REFUSED and "unknown card X" in step["observation"]


async def test_a_crash_in_one_parallel_call_lets_the_others_settle_first(
    tid: Callable[[str], str], agent_factory: Any
) -> None:
    """A call still running when its sibling crashes finishes (and is journaled) before the
    step fails: no call outlives its step to race the resumed run, so the resumed run asks
    about the same calls whatever the timing."""
    import asyncio

    done: list[str] = []

    @tool
    async def send(to: str) -> str:
        """Send a message: to 'a' slowly, to 'b' it dies at once."""
        if to == "b" and "b" not in done:
            done.append("b")
            raise Crash()
        await asyncio.sleep(0.2)  # still running when 'b' crashes
        done.append(to)
        return f"sent to {to}"

    model = ScriptedModel(
        [calls(("send", {"to": "a"}, "x"), ("send", {"to": "b"}, "y")), "finished"]
    )
    thread = tid("t-settle")
    async with agent_factory(model, tools=ToolRegistry.of([send])) as agent:
        with pytest.raises(Crash):
            await agent.arun("send both", thread_id=thread)
        assert done == ["b", "a"], "'a' finished before the crash reached the caller"
        await agent.aresume(thread)
        pending = await agent.apending(thread)
        assert [(p["tool_call_id"], p["attempt"]) for p in pending] == [("y", 0)]
        result = await agent.aapprove(thread)
    assert result.success and result.output == "finished"
    assert done == ["b", "a", "b"], "'a' is not sent again; 'b' only when approved"


async def test_unknown_outcomes_survive_a_crash_during_the_approved_rerun(
    tid: Callable[[str], str], agent_factory: Any
) -> None:
    """Two calls with unknown outcomes: a human re-runs one and rejects the other; the re-run
    dies too. The new unknown outcome is asked about again (the old approval was for the
    previous attempt), and the rejection still stands without asking twice."""
    import threading

    sent: list[str] = []
    lock = threading.Lock()

    @tool
    def send(to: str) -> str:
        """Send a message; to 'a' it dies twice after sending, to 'b' once."""
        with lock:
            sent.append(to)
            count = sent.count(to)
        if (to == "a" and count <= 2) or (to == "b" and count == 1):
            raise Crash()
        return f"sent to {to}"

    model = ScriptedModel(
        [calls(("send", {"to": "a"}, "x"), ("send", {"to": "b"}, "y")), "finished"]
    )
    thread = tid("t-twice")
    async with agent_factory(model, tools=ToolRegistry.of([send])) as agent:
        with pytest.raises(Crash):
            await agent.arun("send both", thread_id=thread)
        await agent.aresume(thread)
        [first] = await agent.apending(thread)
        assert (first["tool_call_id"], first["attempt"]) == ("x", 0)
        await agent.aapprove(thread)  # re-run x
        [second] = await agent.apending(thread)
        assert (second["tool_call_id"], second["attempt"]) == ("y", 0)
        with pytest.raises(Crash):
            await agent.aapprove(thread, reject="b already has it")  # x dies again
        again = await agent.aresume(thread)
        assert again.status == "interrupted"
        [third] = await agent.apending(thread)
        assert (third["tool_call_id"], third["attempt"]) == ("x", 1), "asked anew"
        result = await agent.aapprove(thread)
    assert result.success and result.output == "finished"
    assert sorted(sent) == ["a", "a", "a", "b"], "b is never re-sent; a only when approved"
    observations = [s["observation"] for s in result.metadata.trace if s["node"] == "act"]
    assert observations[0] == "sent to a" and "b already has it" in observations[1]


async def test_resume_without_a_checkpoint_says_what_to_do(
    tid: Callable[[str], str], agent_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed before its first checkpoint (here: the first checkpoint write never
    happens), or a wrong id, resumes to a clear Keel error, not LangGraph's EmptyInputError;
    the thread stays usable, and the advice (ask again on it) works."""
    from keel.runtime import resume_settings

    async with agent_factory(ScriptedModel(["the answer"])) as agent:
        saver = agent.storage.saver

        async def killed(*args: Any, **kwargs: Any) -> Any:
            raise Crash()

        monkeypatch.setattr(saver, "aput", killed)
        monkeypatch.setattr(saver, "aput_writes", killed)
        with pytest.raises(Crash):
            await agent.arun("what is the answer?", thread_id=tid("t-early"))
        monkeypatch.undo()
        for thread_id in (tid("t-early"), tid("t-typo")):
            with pytest.raises(ThreadNotFoundError) as caught:
                await agent.aresume(thread_id)
            assert caught.value.code == ErrorCode.THREAD_NOT_FOUND
            assert f"keel run --thread {thread_id}" in caught.value.message
            assert "nothing to resume" in caught.value.message
            with pytest.raises(ThreadNotFoundError):
                await resume_settings(agent.settings, thread_id)
            with pytest.raises(ThreadNotFoundError):
                await agent.ahistory(thread_id)
        again = await agent.arun("what is the answer?", thread_id=tid("t-early"))
        assert again.success and again.output == "the answer"
        assert (await agent.aresume(tid("t-early"))).output == "the answer"
