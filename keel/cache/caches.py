"""The three caches over one backend: model responses, tool results and whole runs.

Keys are `<kind>:<tenant>:<sha256 of the exact inputs>`, so tenants never share entries.
Only successful results are stored (a failed model call or tool raises before anything is
written). The model-response cache plugs into LangChain's own cache hook (`BaseCache`);
which tenant a call belongs to comes from `cache_scope`, set around each `reason` step.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

import structlog
from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.messages import AIMessage, message_to_dict, messages_from_dict
from langchain_core.outputs import ChatGeneration

from keel.cache.backends import CacheBackend
from keel.config import CacheSettings
from keel.observability import events

__all__ = [
    "CacheScope",
    "Caches",
    "ModelResponseCache",
    "cache_key",
    "cache_scope",
    "normalize_question",
]

_log = structlog.get_logger("keel.cache")

CACHE_HIT = "keel_cache"
"""`response_metadata` key set to `"hit"` on a reply served from the cache."""


def cache_key(kind: str, tenant: str, *parts: str) -> str:
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return f"{kind}:{tenant}:{digest}"


def normalize_question(question: str) -> str:
    """Case, spacing, Unicode forms and trailing punctuation do not change the answer."""
    text = unicodedata.normalize("NFKC", question).casefold()
    text = re.sub(r"\s+", " ", text).strip()
    return text.rstrip(" ?!.")


class Caches:
    """The caches of one agent, with hit/miss counts per cache (`model`, `tool`, `run`)."""

    def __init__(self, backend: CacheBackend | None, settings: CacheSettings) -> None:
        self.backend = backend
        self.settings = settings
        self.hits: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()

    def enabled(self, kind: str) -> bool:
        if self.backend is None:
            return False
        flags = {
            "model": self.settings.model_responses,
            "tool": self.settings.tool_results,
            "run": self.settings.runs,
        }
        return flags.get(kind, False)

    async def _get(self, kind: str, key: str) -> bytes | None:
        """A look-up; a failing backend is a miss (a cache never fails a run)."""
        assert self.backend is not None
        try:
            value = await self.backend.get(key)
        except Exception as exc:
            _log.warning("cache.backend_error", backend=self.backend.name, error=str(exc)[:200])
            value = None
        (self.hits if value is not None else self.misses)[kind] += 1
        events.cache_lookup(kind, hit=value is not None)
        return value

    async def _set(self, key: str, value: bytes) -> None:
        assert self.backend is not None
        try:
            await self.backend.set(key, value, self.settings.ttl_s)
        except Exception as exc:
            _log.warning("cache.backend_error", backend=self.backend.name, error=str(exc)[:200])

    async def model_reply(self, tenant: str, model: str, llm_string: str, prompt: str) -> Any:
        if not self.enabled("model"):
            return None
        raw = await self._get("model", cache_key("model", tenant, model, llm_string, prompt))
        return json.loads(raw) if raw is not None else None

    async def store_model_reply(
        self, tenant: str, model: str, llm_string: str, prompt: str, reply: dict[str, Any]
    ) -> None:
        if self.enabled("model"):
            key = cache_key("model", tenant, model, llm_string, prompt)
            await self._set(key, json.dumps(reply).encode())

    async def tool_result(
        self,
        tenant: str,
        tool: str,
        toolset: str,
        args: dict[str, Any],
        compute: Callable[[], Awaitable[str]],
    ) -> str:
        """The tool's result for these arguments: from the cache, or computed and stored."""
        if not self.enabled("tool"):
            return await compute()
        key = cache_key(
            "tool", tenant, tool, toolset, json.dumps(args, sort_keys=True, default=str)
        )
        raw = await self._get("tool", key)
        if raw is not None:
            return raw.decode()
        result = await compute()
        await self._set(key, result.encode())
        return result

    async def run_result(self, tenant: str, question: str, fingerprint: str) -> Any:
        if not self.enabled("run"):
            return None
        key = cache_key("run", tenant, normalize_question(question), fingerprint)
        raw = await self._get("run", key)
        return json.loads(raw) if raw is not None else None

    async def store_run_result(
        self, tenant: str, question: str, fingerprint: str, result: dict[str, Any]
    ) -> None:
        if self.enabled("run"):
            key = cache_key("run", tenant, normalize_question(question), fingerprint)
            await self._set(key, json.dumps(result, default=str).encode())

    def hit_rate(self, kind: str) -> float:
        total = self.hits[kind] + self.misses[kind]
        return self.hits[kind] / total if total else 0.0

    async def aclose(self) -> None:
        if self.backend is not None:
            await self.backend.aclose()


@dataclass
class CacheScope:
    """The tenant and model of the calls in a `reason` step, and the replies to keep.

    Replies are held back until `commit`: the step stores them only once it knows the reply
    was usable (not malformed), and a repair pass never reads the reply it is repairing.
    """

    caches: Caches
    tenant: str
    model: str
    read: bool = True
    pending: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    async def commit(self) -> None:
        for llm_string, prompt, reply in self.pending:
            await self.caches.store_model_reply(self.tenant, self.model, llm_string, prompt, reply)
        self.pending.clear()


_SCOPE: ContextVar[CacheScope | None] = ContextVar("keel_cache_scope", default=None)


class cache_scope:
    """Model calls made inside use `caches` under `tenant` (no caches, or model replies not
    cached: no scope, so no caching). A plain context manager, not a generator-based one:
    it stays alive for the length of a model call, and with a thousand runs waiting on
    theirs every object counts (issue 19); for the same reason, with no scope and none
    around it, it sets nothing."""

    __slots__ = ("scope", "token")

    def __init__(
        self, caches: Caches | None, tenant: str, model: str, *, read: bool = True
    ) -> None:
        self.scope = (
            CacheScope(caches, tenant, model, read)
            if caches is not None and caches.enabled("model")
            else None
        )
        self.token: Token[CacheScope | None] | None = None

    def __enter__(self) -> CacheScope | None:
        if self.scope is not None or _SCOPE.get() is not None:
            self.token = _SCOPE.set(self.scope)
        return self.scope

    def __exit__(self, *exc: object) -> None:
        if self.token is not None:
            _SCOPE.reset(self.token)


_VOLATILE = ("id", "response_metadata", "usage_metadata")


def _stable_prompt(prompt: str) -> str:
    """LangChain's serialized prompt without per-call fields (ids, usage, provider metadata).

    A history that contains a reply served from the cache must key like the original one.
    """
    try:
        messages = json.loads(prompt)
    except ValueError:
        return prompt
    if not isinstance(messages, list):
        return prompt
    for message in messages:
        kwargs = message.get("kwargs") if isinstance(message, dict) else None
        if isinstance(kwargs, dict):
            for name in _VOLATILE:
                kwargs.pop(name, None)
    return json.dumps(messages, sort_keys=True)


class ModelResponseCache(BaseCache):
    """LangChain's cache hook, routed to the `Caches` of the current scope.

    The key is LangChain's exact one (model parameters, bound tools, stop words and the
    serialized messages) plus the model spec and tenant. A hit has zero usage and is marked
    `response_metadata["keel_cache"] = "hit"`, so it costs nothing in the accounting.
    """

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        return None  # Keel only calls models asynchronously.

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        return None

    def clear(self, **kwargs: Any) -> None:
        return None

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        scope = _SCOPE.get()
        if scope is None or not scope.read:
            return None
        stored = await scope.caches.model_reply(
            scope.tenant, scope.model, llm_string, _stable_prompt(prompt)
        )
        if stored is None:
            return None
        (message,) = messages_from_dict([stored])
        assert isinstance(message, AIMessage)
        hit = message.model_copy(
            update={
                "usage_metadata": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0},
                "response_metadata": {**message.response_metadata, CACHE_HIT: "hit"},
            }
        )
        return [ChatGeneration(message=hit)]

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        scope = _SCOPE.get()
        if scope is None or len(return_val) != 1:
            return
        generation = return_val[0]
        if not isinstance(generation, ChatGeneration) or not isinstance(
            generation.message, AIMessage
        ):
            return
        reply = message_to_dict(generation.message)
        scope.pending.append((llm_string, _stable_prompt(prompt), reply))

    async def aclear(self, **kwargs: Any) -> None:
        return None


MODEL_RESPONSE_CACHE = ModelResponseCache()


def attach_model_cache(models: Sequence[Any], temperature: float) -> None:
    """Route these models' calls through the scoped cache (deterministic settings only)."""
    if temperature != 0:
        return
    for model in models:
        model.cache = MODEL_RESPONSE_CACHE
