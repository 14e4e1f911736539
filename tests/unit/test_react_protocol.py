import json
import re
from typing import Annotated, Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import Field

from keel.errors import ErrorCode, MalformedOutputError
from keel.nodes.react_protocol import (
    REACT_STOP,
    ReactAction,
    ReactFinal,
    format_observation,
    format_react_step,
    parse_react,
    react_instructions,
)
from keel.tools.registry import tool

# --- good replies -------------------------------------------------------------------------

GOOD: list[tuple[str, ReactAction | ReactFinal]] = [
    (
        'Thought: I should search.\nAction: search\nAction Input: {"query": "weather"}',
        ReactAction("I should search.", "search", {"query": "weather"}),
    ),
    (
        'Action: search\nAction Input: {"query": "weather"}',
        ReactAction(None, "search", {"query": "weather"}),
    ),
    (
        "Thought: first line\n  second line\n\nthird\nAction: web-search_2\n"
        'Action Input: {"q": [1, 2.5, null, true], "nested": {"k": "v"}}',
        ReactAction(
            "first line\n  second line\n\nthird",
            "web-search_2",
            {"q": [1, 2.5, None, True], "nested": {"k": "v"}},
        ),
    ),
    (
        'Thought: fenced\nAction: search\nAction Input: ```json\n{"query": "x"}\n```\n',
        ReactAction("fenced", "search", {"query": "x"}),
    ),
    (
        'Action: search\nAction Input:\n```\n{\n  "query": "x",\n  "limit": 3\n}\n```',
        ReactAction(None, "search", {"query": "x", "limit": 3}),
    ),
    (
        'Action: search\nAction Input: ```JSON {"query": "x"} ```',
        ReactAction(None, "search", {"query": "x"}),
    ),
    (
        'Action: search\nAction Input: {"query": "x"}   \n\n\t',
        ReactAction(None, "search", {"query": "x"}),
    ),
    (
        "Action: noargs\nAction Input: {}",
        ReactAction(None, "noargs", {}),
    ),
    (
        'Action: search\nAction Input: {"code": "```py```", "text": "Action: no"}',
        ReactAction(None, "search", {"code": "```py```", "text": "Action: no"}),
    ),
    (
        "Thought: done\nFinal Answer: Paris.",
        ReactFinal("done", "Paris."),
    ),
    (
        "Final Answer: line one\n\n- bullet\n  indented\n",
        ReactFinal(None, "line one\n\n- bullet\n  indented"),
    ),
    (
        "Final Answer:\nThe answer is 42.",
        ReactFinal(None, "The answer is 42."),
    ),
    (
        "   Thought: indented\n\t Action: search\n  Action Input: {}",
        ReactAction("indented", "search", {}),
    ),
    (
        'THOUGHT: loud\nACTION: search\naction input: {"a": 1}',
        ReactAction("loud", "search", {"a": 1}),
    ),
    (
        "thought : spaced\nFINAL  ANSWER : ok",
        ReactFinal("spaced", "ok"),
    ),
    (
        "Thought:\r\nwindows\r\nFinal Answer: crlf\r\n",
        ReactFinal("windows", "crlf"),
    ),
    (
        'Thought: look it up\nAction: search\nAction Input: {"q": "x"}\n'
        "Observation: it is sunny\nThought: great\nFinal Answer: sunny",
        ReactAction("look it up", "search", {"q": "x"}),
    ),
    (
        'Action: search\nAction Input: {"q": "x"}\n  observation: hallucinated junk {',
        ReactAction(None, "search", {"q": "x"}),
    ),
    (
        "Final Answer: yes\nObservation: something\nFinal Answer: no",
        ReactFinal(None, "yes"),
    ),
    (
        "Thought: **Action:** in a thought is text\nFinal Answer: The Observation: is mid-line",
        ReactFinal("**Action:** in a thought is text", "The Observation: is mid-line"),
    ),
    (
        "Thought:   \nFinal Answer: empty thought reads as None",
        ReactFinal(None, "empty thought reads as None"),
    ),
]


@pytest.mark.parametrize(("reply", "expected"), GOOD)
def test_parse_good_replies(reply: str, expected: ReactAction | ReactFinal) -> None:
    assert parse_react(reply) == expected


# --- bad replies --------------------------------------------------------------------------

BAD: list[tuple[str, str, str]] = [
    ("bad json", "Action: search\nAction Input: {'query': 'x'}", "not valid JSON"),
    ("unclosed", 'Action: search\nAction Input: {"query": "x"', "not valid JSON"),
    ("bare string", "Action: search\nAction Input: weather in Paris", "not valid JSON"),
    ("list", 'Action: search\nAction Input: ["x"]', "must be a JSON object"),
    ("json string", 'Action: search\nAction Input: "x"', "got a string"),
    ("number", "Action: search\nAction Input: 42", "got a number"),
    ("null", "Action: search\nAction Input: null", "got null"),
    (
        "action and final",
        'Action: search\nAction Input: {"q": 1}\nFinal Answer: done',
        "both an Action and a Final Answer",
    ),
    (
        "final then action",
        "Final Answer: done\nAction: search",
        "both an Action and a Final Answer",
    ),
    ("missing input", "Thought: hmm\nAction: search", "no 'Action Input:' line"),
    ("input without action", 'Action Input: {"q": 1}', "no 'Action:' line"),
    ("empty input", "Action: search\nAction Input:   ", "Action Input is empty"),
    ("empty final", "Thought: ok\nFinal Answer:   \n\n", "'Final Answer:' is empty"),
    ("no labels", "The weather in Paris is sunny.", "must end with"),
    ("empty reply", "", "must end with"),
    ("only thought", "Thought: I wonder.", "must end with"),
    (
        "only observation",
        "Observation: sunny\nFinal Answer: sunny",
        "never write the Observation yourself",
    ),
    (
        "trailing junk",
        'Action: search\nAction Input: {"q": 1} I hope this helps',
        "text after the JSON object",
    ),
    (
        "trailing junk on next line",
        'Action: search\nAction Input: {"q": 1}\nLet me know!',
        "text after the JSON object",
    ),
    ("two objects", 'Action: s\nAction Input: {"a": 1} {"b": 2}', "text after the JSON object"),
    (
        "junk after fence",
        'Action: s\nAction Input: ```json\n{"a": 1}\n```\nthanks',
        "text after the JSON object",
    ),
    (
        "junk inside fence",
        'Action: s\nAction Input: ```json\n{"a": 1} // comment\n```',
        "text after the JSON object",
    ),
    ("unclosed fence", 'Action: s\nAction Input: ```json\n{"a": 1}\n', "never closes it"),
    ("wrong fence", 'Action: s\nAction Input: ```python\n{"a": 1}\n```', "'python'"),
    (
        "duplicate action",
        'Action: a\nAction Input: {}\nAction: b\nAction Input: {"x": 1}',
        "2 'Action:' lines",
    ),
    ("duplicate action no input", "Action: a\nAction: b\nAction Input: {}", "2 'Action:' lines"),
    ("duplicate input", "Action: a\nAction Input: {}\nAction Input: {}", "2 'Action Input:'"),
    ("duplicate final", "Final Answer: a\nFinal Answer: b", "2 'Final Answer:' lines"),
    ("duplicate thought", "Thought: a\nThought: b\nFinal Answer: c", "2 'Thought:' lines"),
    ("input before action", "Action Input: {}\nAction: search", "out of order"),
    ("thought after action", "Action: s\nAction Input: {}\nThought: late", "out of order"),
    ("thought after final", "Final Answer: x\nThought: late", "out of order"),
    ("preamble", "Sure! Here you go.\nAction: s\nAction Input: {}", "outside any label"),
    ("tool name with spaces", "Action: web search\nAction Input: {}", "just the tool name"),
    ("tool name with call", 'Action: search("x")\nAction Input: {}', "just the tool name"),
    ("tool name backticks", "Action: `search`\nAction Input: {}", "just the tool name"),
    ("empty tool name", "Action:\nAction Input: {}", "no tool name"),
    ("duplicate key", 'Action: s\nAction Input: {"a": 1, "a": 2}', "repeats the key 'a'"),
    ("nested duplicate key", 'Action: s\nAction Input: {"o": {"k": 1, "k": 1}}', "repeats"),
    ("nan", 'Action: s\nAction Input: {"a": NaN}', "NaN"),
    ("infinity", 'Action: s\nAction Input: {"a": -Infinity}', "-Infinity"),
    ("too deep", 'Action: s\nAction Input: {"a": ' + "[" * 100_000, "not valid JSON"),
    ("huge int", 'Action: s\nAction Input: {"a": ' + "9" * 5000 + "}", "not valid JSON"),
    (
        "markdown bold labels",
        '**Thought:** hmm\n**Action:** search\n**Action Input:** {"q": 1}',
        "plain text",
    ),
    ("markdown bold action only", '**Action:** search\nAction Input: {"q": 1}', "plain text"),
    ("markdown heading", "## Final Answer: yes", "plain text"),
]


@pytest.mark.parametrize(
    ("reply", "reason"), [case[1:] for case in BAD], ids=[case[0] for case in BAD]
)
def test_parse_bad_replies(reply: str, reason: str) -> None:
    with pytest.raises(MalformedOutputError) as info:
        parse_react(reply)
    assert reason in str(info.value)
    assert info.value.code is ErrorCode.MALFORMED_OUTPUT


def test_json_error_quotes_decoder_message() -> None:
    with pytest.raises(MalformedOutputError, match="Expecting property name enclosed in double"):
        parse_react("Action: s\nAction Input: {'a': 1}")


def test_plain_label_hint_only_when_markdown_used() -> None:
    with pytest.raises(MalformedOutputError) as info:
        parse_react("Action: search")
    assert "plain text" not in str(info.value)


# --- formatting and instructions ----------------------------------------------------------


def test_format_canonical_text() -> None:
    step = ReactAction("why", "search", {"q": "é", "n": [1]})
    assert (
        format_react_step(step)
        == 'Thought: why\nAction: search\nAction Input: {"q": "é", "n": [1]}'
    )
    assert format_react_step(ReactFinal(None, "done")) == "Final Answer: done"


def test_observation_and_stop() -> None:
    assert format_observation("42") == "Observation: 42"
    assert REACT_STOP == ["\nObservation:"]
    reply = format_react_step(ReactAction(None, "calc", {"e": "6*7"}))
    assert parse_react(reply + "\n" + format_observation("42")) == parse_react(reply)


def test_instructions_list_tools_and_teach_format() -> None:
    @tool
    def search(query: Annotated[str, Field(description="what to look for")], limit: int = 5) -> str:
        """Search the web for pages."""
        return query

    @tool(name="no-args")
    def ping() -> str:
        """Check that the service answers."""
        return "pong"

    text = react_instructions([search, ping])
    assert "- search: Search the web for pages." in text
    assert "- no-args: Check that the service answers." in text
    schema = json.dumps(search.openai_schema()["function"]["parameters"], ensure_ascii=False)
    assert schema in text
    assert '"what to look for"' in text
    for label in ("Thought:", "Action:", "Action Input:", "Final Answer:", "Observation:"):
        assert label in text
    assert "plain text" in text
    example = text.split("Your reply:\n", 1)[1].split("\n\n", 1)[0]
    assert isinstance(parse_react(example), ReactAction)
    final = text.split("Your next reply:\n", 1)[1]
    assert isinstance(parse_react(final), ReactFinal)


def test_instructions_without_tools() -> None:
    assert "No tools are available" in react_instructions([])


# --- properties ---------------------------------------------------------------------------

_LABEL_LIKE = re.compile(
    r"^\s*(thought|action(\s+input)?|final\s+answer|observation)\s*:", re.IGNORECASE | re.MULTILINE
)

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"))
_prose = _text.filter(lambda t: t.strip() == t and t != "" and not _LABEL_LIKE.search(t))
_tool_names = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)
_tool_inputs = st.dictionaries(st.text(), _json_values, max_size=5)
_actions = st.builds(ReactAction, st.none() | _prose, _tool_names, _tool_inputs)
_finals = st.builds(ReactFinal, st.none() | _prose, _prose)

_ci = settings(max_examples=200, deadline=None, derandomize=True)


@_ci
@given(_actions | _finals)
def test_round_trip(step: ReactAction | ReactFinal) -> None:
    assert parse_react(format_react_step(step)) == step


_fragments = st.sampled_from(
    [
        "Thought:",
        "Action:",
        "Action Input:",
        "Final Answer:",
        "Observation:",
        "**Action:**",
        "\n",
        " ",
        "search",
        "{",
        "}",
        "[",
        "]",
        '"',
        ":",
        ",",
        "```",
        "```json",
        "NaN",
        '{"a": 1}',
        "1e999",
    ]
)
_replies = _text | st.lists(_fragments | _text, max_size=12).map("".join)


@_ci
@given(_replies)
def test_arbitrary_text_parses_or_raises_malformed(reply: str) -> None:
    try:
        step = parse_react(reply)
    except MalformedOutputError as exc:
        assert exc.message
    else:
        assert isinstance(step, ReactAction | ReactFinal)


def _reply(payload: str, fenced: bool) -> str:
    body = f"```json\n{payload}\n```" if fenced else payload
    return f"Thought: t\nAction: search\nAction Input: {body}"


@_ci
@given(_tool_inputs, st.data(), st.booleans(), st.booleans())
def test_invalid_json_always_raises(
    tool_input: dict[str, Any], data: st.DataObject, fenced: bool, ascii_only: bool
) -> None:
    payload = json.dumps(tool_input, ensure_ascii=ascii_only)
    corruption = data.draw(st.sampled_from(["drop_close", "truncate", "single_quotes"]))
    if corruption == "drop_close":
        broken = payload[:-1]
    elif corruption == "truncate":
        broken = payload[: data.draw(st.integers(1, len(payload) - 1))]
    else:
        assume('"' in payload)
        broken = payload.replace('"', "'")
    with pytest.raises(MalformedOutputError):
        parse_react(_reply(broken, fenced))


@_ci
@given(_tool_inputs, st.sampled_from([None, 2]), st.booleans(), st.booleans())
def test_tool_input_equals_json_loads(
    tool_input: dict[str, Any], indent: int | None, ascii_only: bool, fenced: bool
) -> None:
    payload = json.dumps(tool_input, indent=indent, ensure_ascii=ascii_only)
    step = parse_react(_reply(payload, fenced))
    assert isinstance(step, ReactAction)
    assert type(step.tool_input) is dict
    assert step.tool_input == json.loads(payload)
