"""A trace's payloads as LangSmith gets them: messages serialised as `dumpd` writes them
(once per message of a trace), model replies and usage read from `LLMResult`, and secrets
masked as `keel.observability.redact` masks them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from langchain_core.load import Serializable, dumpd
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult
from pydantic import BaseModel

from keel.observability.redact import MASK, json_may_hold_secret, redact

_MAX_DEPTH = 32
"""Nesting followed when masking (as `redact`); anything deeper is masked whole."""
_MESSAGE_DEPTH = 3
"""A message's depth in a model run's inputs: `{"messages": [[message, …]]}`."""


class _Masker:
    """Secrets out of one trace's payloads, as `redact` masks them, in one pass.

    Messages and other models become the data the client would send (`model_dump`), then
    every string and key is masked by `redact`. A trace repeats much of its text (each model
    run's input holds the whole conversation so far, the system prompt included), so each
    distinct string is masked once per trace, and each key checked once.
    """

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}
        self._secret_keys: dict[str, bool] = {}

    def text(self, value: str) -> str:
        done = self._texts.get(value)
        if done is None:
            done = self._texts[value] = redact(value)
        return done

    def _secret(self, key: str) -> bool:
        known = self._secret_keys.get(key)
        if known is None:  # redact's own rule for keys: a named secret's value is masked
            known = self._secret_keys[key] = redact({key: 0})[key] == MASK
        return known

    def __call__(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if depth > _MAX_DEPTH:
            return MASK
        if isinstance(value, BaseModel):
            return self(value.model_dump(mode="json"), depth)
        if isinstance(value, Mapping):
            return {
                k: MASK
                if isinstance(k, str) and v is not None and self._secret(k)
                else self(v, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [self(v, depth + 1) for v in value]
        return self.text(str(value))

    def payload(self, value: Any, depth: int = 0) -> Any:
        """`value` masked, or `value` itself when its JSON shows nothing `redact` could mask
        (`json_may_hold_secret`): one serialisation in C instead of a walk in Python over
        every key and string. Anything orjson does not serialise natively is walked."""
        try:
            text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:
            return self(value, depth)
        return self(value, depth) if json_may_hold_secret(text.decode()) else value


class _Dumper:
    """Messages as LangChain serialises them (`dumpd`), masked, once per message of a trace:
    every later model run's prompt repeats it, and a model's reply is the next prompt's
    last message (the messages live as long as the trace, so their ids stay theirs)."""

    def __init__(self, mask: _Masker) -> None:
        self.mask = mask
        self._done: dict[int, Any] = {}

    def __call__(self, message: Any, depth: int = _MESSAGE_DEPTH) -> Any:
        """Masked at the depth a message has in a model run's inputs (`{"messages":
        [[message]]}`), so the result is what masking those inputs whole would give."""
        key = id(message)
        found = self._done.get(key)
        if found is None:
            found = self._done[key] = self._dump(message, depth)
        return found

    def _dump(self, message: Any, depth: int) -> Any:
        data = _plain_dumpd(message)
        if data is not None:
            try:
                text = orjson.dumps(data).decode()
            except TypeError:  # not plain JSON data: dumpd's own conversions apply
                data = None
            else:
                if text.count('"lc":') == 1:  # no user dict dumpd would escape
                    return self.mask(data, depth) if json_may_hold_secret(text) else data
        return self.mask.payload(dumpd(message), depth)


_Field = tuple[str, bool, Any, Any]
_Plan = tuple[list[str], tuple[_Field, ...], tuple[Any, ...]]
_PLANS: dict[type, _Plan | None] = {}


def _plan(cls: type) -> _Plan | None:
    """How `Serializable.to_json` builds a message class's constructor arguments: its id;
    per field (name, required, default factory, default); the `lc_attributes` properties
    added after them, most derived first. None for a class that declares secrets or
    serialises itself (then `dumpd` is used)."""
    if cls in _PLANS:
        return _PLANS[cls]
    plan: _Plan | None = None
    if issubclass(cls, BaseMessage) and cls.is_lc_serializable():
        own = cls.__mro__[: cls.__mro__.index(Serializable)]
        if not any("lc_secrets" in c.__dict__ or "to_json" in c.__dict__ for c in own):
            fields = []
            for name, f in cls.model_fields.items():
                if f.exclude:
                    continue
                factory = f.default_factory if f.default_factory in (dict, list) else None
                default = None if f.default_factory is not None else f.get_default()
                fields.append((name, f.is_required(), factory, default))
            attributes = tuple(
                c.__dict__["lc_attributes"] for c in own if "lc_attributes" in c.__dict__
            )
            plan = (list(cls.lc_id()), tuple(fields), attributes)
    _PLANS[cls] = plan
    return plan


def _plain_dumpd(message: Any) -> dict[str, Any] | None:
    """`dumpd(message)` for a message class that serialises the standard way, by
    `to_json`'s rule (a field is sent when required, truthy, or unlike its default; then
    the class's `lc_attributes`), without its per-field introspection; None when `dumpd`
    itself must be used."""
    plan = _plan(type(message))
    if plan is None:
        return None
    lc_id, fields, attributes = plan
    kwargs: dict[str, Any] = {}
    for name, required, factory, default in fields:
        value = getattr(message, name)
        if required or value:
            kwargs[name] = value
        elif factory is not None and isinstance(value, factory):
            continue
        elif value is not default and value != default:
            kwargs[name] = value
    for attribute in attributes:
        kwargs.update(attribute.__get__(message))
    return {"lc": 1, "type": "constructor", "id": lc_id, "kwargs": kwargs}


def _tool_names(tools: Any) -> list[str]:
    """The bound tools by name (light payloads: every model run would repeat the schemas)."""
    names = []
    for t in tools if isinstance(tools, list | tuple) else ():
        function = t.get("function") if isinstance(t, Mapping) else None
        name = function.get("name") if isinstance(function, Mapping) else None
        names.append(str(name) if name is not None else "?")
    return names


def _llm_outputs(response: LLMResult, dump: _Dumper) -> dict[str, Any]:
    """What LangChain's tracer sends for a model's reply (`LLMResult.model_dump()` with each
    message serialised as `dumpd` does), built without dumping the messages twice."""
    generations = []
    for batch in response.generations:
        row = []
        for g in batch:
            item: dict[str, Any] = {
                "text": g.text,
                "generation_info": g.generation_info,
                "type": g.type,
            }
            message = getattr(g, "message", None)
            if message is not None:
                item["message"] = dump(message, 4)  # {"generations": [[{"message": …}]]}
            row.append(item)
        generations.append(row)
    return {
        "generations": generations,
        "llm_output": response.llm_output,
        "run": None,
        "type": "LLMResult",
    }


def _usage(response: LLMResult) -> tuple[dict[str, Any] | None, int]:
    """The reply's token usage (summed over its messages) and how many tool calls it makes."""
    usage: dict[str, Any] | None = None
    calls = 0
    for batch in response.generations:
        for g in batch:
            message = getattr(g, "message", None)
            calls += len(getattr(message, "tool_calls", None) or ())
            found = getattr(message, "usage_metadata", None)
            if isinstance(found, Mapping):
                if usage is None:
                    usage = dict(found)
                else:
                    for k, v in found.items():
                        if isinstance(v, int) and isinstance(usage.get(k), int):
                            usage[k] += v
    return usage, calls
