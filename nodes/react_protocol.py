"""The ReAct text protocol: how a model without native tool calling asks for a tool.

A reply is an optional `Thought:` followed by exactly one of

```
Action: <tool name>
Action Input: <one JSON object>
```

or `Final Answer: <text>`. `parse_react` is strict: anything it cannot read unambiguously
raises `MalformedOutputError` whose message is written for the model (the `reason` node feeds
it back as a repair hint), so it never guesses a tool call.

Reading rules (the design choices, in one place):

- Labels (`Thought`, `Action`, `Action Input`, `Final Answer`, `Observation`) are matched
  case-insensitively at the start of a line, after optional spaces or tabs, with optional
  spaces before the colon. Lines are split on `\\n` only (`\\r\\n` and `\\r` are normalised).
- Markdown-decorated labels (`**Action:**`, `## Action:`) are *not* labels: accepting them
  would mean guessing where a label ends. A reply that fails and contains one gets a hint
  to write the labels as plain text. Inside a Thought or Final Answer they are plain text.
- `Thought` and `Final Answer` may span lines, up to the next label; both are stripped. An
  empty Thought reads as `None`; an empty Final Answer is an error.
- Text before the first label is an error (reasoning belongs after `Thought:`).
- Everything from a line starting with `Observation:` onward is ignored: that is the model
  hallucinating the tool's result. The runtime also passes `stop=REACT_STOP` so most models
  stop before writing it.
- `Action Input` must be one JSON object, optionally inside a ```` ``` ```` or
  ```` ```json ```` fence. Invalid JSON, a non-object value, duplicate keys, `NaN` /
  `Infinity`, or any non-whitespace text after the object is an error: the parser never falls
  back to `{}` or to wrapping the raw string.
- One label of each kind per reply; Action and Final Answer together is an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from keel.errors import MalformedOutputError
from keel.tools.registry import Tool, is_tool_name

__all__ = [
    "REACT_STOP",
    "ReactAction",
    "ReactFinal",
    "format_observation",
    "format_react_step",
    "parse_react",
    "react_instructions",
]

REACT_STOP = ["\nObservation:"]
"""Stop sequences for a ReAct call: the model must not write the tool's result itself."""

_THOUGHT = "thought"
_ACTION = "action"
_INPUT = "action input"
_FINAL = "final answer"
_OBSERVATION = "observation"

_DISPLAY = {
    _THOUGHT: "Thought:",
    _ACTION: "Action:",
    _INPUT: "Action Input:",
    _FINAL: "Final Answer:",
}

_LABEL_RE = re.compile(
    r"^[ \t]*(?P<label>thought|action[ \t]+input|action|final[ \t]+answer|observation)[ \t]*:",
    re.IGNORECASE | re.MULTILINE,
)
_DECORATED_LABEL_RE = re.compile(
    r"^[ \t]*(?:[*_]{1,3}|#{1,6}[ \t]*)[ \t]*(?:thought|action[ \t]+input|action|final[ \t]+answer)"
    r"[ \t]*(?:[*_]{1,3})?[ \t]*:",
    re.IGNORECASE | re.MULTILINE,
)
_FENCE_OPEN_RE = re.compile(r"```[ \t]*(?P<tag>[A-Za-z0-9_+.-]*)")

_PLAIN_LABELS_HINT = (
    " Write the labels as plain text at the start of a line (Action:, not **Action:**)."
)
_OBSERVATION_HINT = (
    " Everything from 'Observation:' on was ignored: never write the Observation yourself,"
    " the runtime sends it after running the tool."
)
_ENDING = (
    "The reply must end with either 'Action: <tool name>' followed by"
    " 'Action Input: <JSON object>' on the next line, or 'Final Answer: <your answer>'."
)


@dataclass(frozen=True)
class ReactAction:
    """The model asks to run one tool."""

    thought: str | None
    """The model's reasoning before the call, if it wrote any."""
    tool: str
    """The tool's name as the model wrote it (not yet checked against the registry)."""
    tool_input: dict[str, Any]
    """The arguments, decoded from the Action Input JSON object."""


@dataclass(frozen=True)
class ReactFinal:
    """The model answers the user; the run ends."""

    thought: str | None
    """The model's reasoning before the answer, if it wrote any."""
    answer: str
    """The answer text, stripped; never empty."""


class _JSONRejected(ValueError):
    """Valid to Python's `json`, but not to the protocol (duplicate keys, NaN)."""


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _JSONRejected(f"Action Input repeats the key {key!r}; give each argument once.")
        obj[key] = value
    return obj


def _no_constants(name: str) -> Any:
    raise _JSONRejected(
        f"Action Input uses {name}, which is not valid JSON; use a number or null instead."
    )


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)


def _quote(text: str, limit: int = 60) -> str:
    text = text.strip()
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return repr(text)


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _decode_object(text: str, start: int) -> tuple[dict[str, Any], int]:
    """Decode the JSON object at `text[start:]`; return it and the index just after it."""
    try:
        value, end = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        near = text[max(start, exc.pos - 20) : exc.pos + 20]
        raise MalformedOutputError(
            f"Action Input is not valid JSON: {exc.msg} (at {_quote(near)})."
            " Write exactly one JSON object with double-quoted keys and strings,"
            ' e.g. {"query": "weather in Paris"}.'
        ) from exc
    except _JSONRejected as exc:
        raise MalformedOutputError(str(exc)) from exc
    except RecursionError as exc:
        raise MalformedOutputError(
            "Action Input is not valid JSON: it is nested too deeply."
            " Write a flat JSON object of argument names and values."
        ) from exc
    except ValueError as exc:
        raise MalformedOutputError(f"Action Input is not valid JSON: {exc}.") from exc
    if not isinstance(value, dict):
        raise MalformedOutputError(
            f"Action Input must be a JSON object ({{...}}) mapping argument names to values,"
            f" got {_json_type(value)}. Wrap the arguments in an object, e.g."
            ' {"query": "weather in Paris"}.'
        )
    return value, end


def _parse_input(content: str) -> dict[str, Any]:
    body = content.strip()
    if not body:
        raise MalformedOutputError(
            "Action Input is empty: give the tool's arguments as a JSON object"
            " on the same line ({} if the tool takes no arguments)."
        )
    fence = _FENCE_OPEN_RE.match(body)
    if fence is None:
        value, end = _decode_object(body, 0)
        rest = body[end:]
    else:
        if fence["tag"] and fence["tag"].lower() != "json":
            raise MalformedOutputError(
                f"Action Input is in a code fence marked {fence['tag']!r}:"
                " use a ```json fence or no fence at all."
            )
        start = fence.end()
        while start < len(body) and body[start].isspace():
            start += 1
        value, end = _decode_object(body, start)
        rest = body[end:].lstrip()
        if not rest.startswith("```"):
            if not rest:
                raise MalformedOutputError(
                    "Action Input opens a ``` code fence but never closes it:"
                    " close it with ``` right after the JSON object, or drop the fence."
                )
        else:
            rest = rest[3:]
    if rest.strip():
        raise MalformedOutputError(
            f"Action Input has text after the JSON object: {_quote(rest)}."
            " End the reply right after the JSON object: no comments, no extra text."
        )
    return value


def _parse_tool(content: str) -> str:
    name = content.strip()
    if not name:
        raise MalformedOutputError(
            "'Action:' has no tool name: write the name of one tool, e.g. 'Action: search'."
        )
    if not is_tool_name(name):
        raise MalformedOutputError(
            f"'Action:' must be followed by just the tool name (letters, digits, _ and -),"
            f" got {_quote(name)}. Put the arguments in 'Action Input:' on the next line."
        )
    return name


def parse_react(text: str) -> ReactAction | ReactFinal:
    """Read one ReAct reply; raise `MalformedOutputError` saying what to fix if it is not one."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    dropped_observation = False
    for match in _LABEL_RE.finditer(text):
        if _label(match) == _OBSERVATION:
            text = text[: match.start()]
            dropped_observation = True
            break
    matches = list(_LABEL_RE.finditer(text))
    labels = [_label(m) for m in matches]
    hints = (_PLAIN_LABELS_HINT if _DECORATED_LABEL_RE.search(text) else "") + (
        _OBSERVATION_HINT if dropped_observation else ""
    )

    if not labels:
        raise MalformedOutputError(
            f"The reply has no 'Action:' or 'Final Answer:' line. {_ENDING}{hints}"
        )
    for label in (_ACTION, _INPUT, _FINAL, _THOUGHT):
        count = labels.count(label)
        if count > 1:
            extra = (
                " Call exactly one tool per reply, then wait for its Observation."
                if label in (_ACTION, _INPUT)
                else f" Write a single '{_DISPLAY[label]}'."
            )
            raise MalformedOutputError(
                f"The reply has {count} '{_DISPLAY[label]}' lines (duplicate).{extra}"
            )
    has_action = _ACTION in labels or _INPUT in labels
    if has_action and _FINAL in labels:
        raise MalformedOutputError(
            "The reply has both an Action and a Final Answer: give exactly one. Either call a"
            " tool (Action + Action Input) and wait for its Observation, or give the Final Answer."
        )
    if not has_action and _FINAL not in labels:
        raise MalformedOutputError(
            f"The reply has a Thought but no Action or Final Answer. {_ENDING}{hints}"
        )
    if _ACTION in labels and _INPUT not in labels:
        raise MalformedOutputError(
            "'Action:' has no 'Action Input:' line: add 'Action Input:' on the next line with"
            f" the tool's arguments as a JSON object ({{}} if it takes none).{hints}"
        )
    if _INPUT in labels and _ACTION not in labels:
        raise MalformedOutputError(
            "'Action Input:' has no 'Action:' line: name the tool with 'Action: <tool name>'"
            f" on the line before 'Action Input:'.{hints}"
        )
    body = [lb for lb in labels if lb != _THOUGHT]
    expected_body = [_ACTION, _INPUT] if has_action else [_FINAL]
    if body != expected_body or (_THOUGHT in labels and labels[0] != _THOUGHT):
        found = ", ".join(_DISPLAY[lb] for lb in labels)
        raise MalformedOutputError(
            f"The labels are out of order (found {found}). Write 'Thought:' first, then either"
            " 'Action:' and 'Action Input:', or 'Final Answer:'."
        )
    preamble = text[: matches[0].start()]
    if preamble.strip():
        raise MalformedOutputError(
            f"The reply starts with text outside any label: {_quote(preamble)}."
            f" Put your reasoning after 'Thought:' at the start of the reply.{hints}"
        )

    contents: dict[str, str] = {}
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        contents[_label(match)] = text[match.end() : end]
    thought = contents.get(_THOUGHT, "").strip() or None
    if has_action:
        tool = _parse_tool(contents[_ACTION])
        return ReactAction(thought=thought, tool=tool, tool_input=_parse_input(contents[_INPUT]))
    answer = contents[_FINAL].strip()
    if not answer:
        raise MalformedOutputError(
            "'Final Answer:' is empty: write the answer to the user after 'Final Answer:'."
        )
    return ReactFinal(thought=thought, answer=answer)


def _label(match: re.Match[str]) -> str:
    return " ".join(match["label"].lower().split())


def format_react_step(step: ReactAction | ReactFinal) -> str:
    """The canonical text of a step; `parse_react` reads it back to an equal step."""
    lines = [] if step.thought is None else [f"Thought: {step.thought}"]
    if isinstance(step, ReactAction):
        lines.append(f"Action: {step.tool}")
        lines.append(f"Action Input: {json.dumps(step.tool_input, ensure_ascii=False)}")
    else:
        lines.append(f"Final Answer: {step.answer}")
    return "\n".join(lines)


def format_observation(content: str) -> str:
    """The user message that hands a tool's result back to a ReAct model."""
    return "Observation: " + content


def _describe_tool(t: Tool) -> str:
    params = t.openai_schema()["function"]["parameters"]
    schema = json.dumps(params, ensure_ascii=False)
    return f"- {t.name}: {t.description}\n  Arguments (JSON schema): {schema}"


_EXAMPLE_CALL = ReactAction(
    thought="I need the current population of Lyon; the lookup tool can find it.",
    tool="lookup",
    tool_input={"query": "population of Lyon"},
)
_EXAMPLE_FINAL = ReactFinal(
    thought="The lookup answered the question.",
    answer="Lyon has about 520,000 inhabitants.",
)


def react_instructions(tools: Iterable[Tool]) -> str:
    """The system-prompt text that teaches the protocol and lists the tools."""
    described = [_describe_tool(t) for t in tools]
    if described:
        tool_section = "You can use these tools:\n" + "\n".join(described)
    else:
        tool_section = "No tools are available: always reply with a Final Answer."
    return f"""{tool_section}

To use a tool, reply in exactly this format and then stop:

Thought: <your reasoning about what to do next>
Action: <the name of one tool from the list>
Action Input: <the tool's arguments as one JSON object matching its schema>

The runtime runs the tool and replies with a message that starts with "Observation:".
Never write the Observation yourself. When you can answer, reply in this format:

Thought: <your reasoning>
Final Answer: <your answer to the user, in plain text>

Rules:
- Start every label (Thought:, Action:, Action Input:, Final Answer:) at the beginning of a
  line, as plain text without markdown.
- One tool call per reply; never give an Action and a Final Answer in the same reply.
- Action is just the tool's name. Action Input is one JSON object with double-quoted keys
  and strings ({{}} if the tool takes no arguments) and nothing after it.
- When you need no tool, or are done, answer in plain text after "Final Answer:".

Example (the "lookup" tool here is only an illustration; use the tools listed above):

Your reply:
{format_react_step(_EXAMPLE_CALL)}

The runtime's message:
{format_observation("Lyon: population 522,250 (2021 census).")}

Your next reply:
{format_react_step(_EXAMPLE_FINAL)}"""
