"""How a run's events become the v3 protocol's events (`routes_thread_stream._RunProtocol`)."""

from __future__ import annotations

from langchain_core.messages import AIMessage, AIMessageChunk, ToolMessage

from keel.server.encode import jsonable
from keel.server.routes_thread_stream import _RunProtocol

META = {"langgraph_node": "reason", "langgraph_step": 1, "tags": ["x"]}


def test_token_chunks_are_sent_whole_once_their_node_has_updated() -> None:
    protocol = _RunProtocol()
    for piece in ("Hel", "lo ", "there"):
        chunk = AIMessageChunk(content=piece, id="m1")
        assert protocol.events("messages", jsonable([chunk, META])) == []
    events = protocol.events("updates", {"reason": {"answer": "Hello there"}})
    kinds = [(method, data["event"]) for method, data in events if method == "messages"]
    assert kinds == [
        ("messages", "message-start"),
        ("messages", "content-block-start"),
        ("messages", "content-block-delta"),
        ("messages", "content-block-finish"),
        ("messages", "message-finish"),
    ]
    start, *rest = (data for method, data in events if method == "messages")
    assert start["id"] == "m1" and start["metadata"]["langgraph_node"] == "reason"
    assert "tags" not in start["metadata"], "only scalar metadata goes with the message"
    assert all(data["message_id"] == "m1" for data in rest)
    assert rest[2]["content"] == {"type": "text", "text": "Hello there"}
    assert events[-1] == ("updates", {"node": "reason", "values": {"answer": "Hello there"}})
    assert protocol.events("end", {"status": "success"}) == [("lifecycle", {"event": "completed"})]


def test_whole_messages_interrupts_and_failures() -> None:
    protocol = _RunProtocol()
    said = protocol.events("messages", jsonable([AIMessage("done", id="m2"), META]))
    assert [d["event"] for _, d in said][::4] == ["message-start", "message-finish"]
    asked = protocol.events(
        "updates", {"__interrupt__": [{"value": {"question": "May I?"}, "id": "i1"}]}
    )
    assert asked == [
        (
            "input.requested",
            {
                "interrupt_id": "i1",
                "payload": {"question": "May I?"},
                "value": {"question": "May I?"},
            },
        )
    ]
    assert protocol.events("updates", {"n": 3}) == [
        ("updates", {"node": "n", "values": {"value": 3}})
    ]
    protocol.events("error", {"error": "RunError", "message": "boom"})
    assert protocol.events("end", {"status": "error"}) == [
        ("lifecycle", {"event": "failed", "error": "boom"})
    ]


def test_a_tool_call_is_told_when_its_result_arrives() -> None:
    protocol = _RunProtocol()
    asked = AIMessage("", id="m3", tool_calls=[{"name": "add", "args": {"a": 1}, "id": "c7"}])
    protocol.events("messages", jsonable([asked, META]))
    done = ToolMessage("2", tool_call_id="c7", name="add", id="t7")
    assert protocol.events("messages", jsonable([done, META])) == [
        (
            "tools",
            {"event": "tool-started", "tool_call_id": "c7", "tool_name": "add", "input": {"a": 1}},
        ),
        ("tools", {"event": "tool-finished", "tool_call_id": "c7", "output": "2"}),
    ]
    failed = ToolMessage("no such table", tool_call_id="c8", name="sql", status="error")
    assert protocol.events("messages", jsonable([failed, META]))[1] == (
        "tools",
        {"event": "tool-error", "tool_call_id": "c8", "message": "no such table"},
    )
