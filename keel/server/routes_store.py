"""The store: items (a JSON object under a namespace and a key) shared across threads.

Served by LangGraph's own `BaseStore` in the checkpoints' database (see
`checkpoints.stores`). Every item belongs to the caller's tenant: the namespace is stored
under a first label `tenant:<id>` that responses never show, so another tenant's items are
not found, searched, listed or deleted. An unknown item is a 404, on delete too.

`ttl` (minutes) is honoured on SQLite and Postgres (a sweep deletes expired items every
minute; Postgres hides them as soon as they expire) and ignored by the `memory://` store.
`index` is accepted and has no effect: no embedding index is configured, so a search with
a natural-language `query` is refused (422) rather than answered unranked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import psycopg
from fastapi import APIRouter, Depends, Query, Request, Response
from langgraph.store.base import BaseStore, Item, SearchItem
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from keel.checkpoints import Storage
from keel.checkpoints.stores import open_store
from keel.config import Settings
from keel.server.auth import Principal
from keel.server.deps import Caller
from keel.server.errors import COMMON_ERRORS, NotFound, Unprocessable

__all__ = ["open_item_store", "router"]

router = APIRouter(tags=["store"], responses=COMMON_ERRORS)

MAX_LABEL = 256
MAX_KEY = 1024
MAX_DEPTH = 64
MAX_TTL_MINUTES = 100 * 365 * 24 * 60
T = TypeVar("T")


def _text(value: str) -> str:
    """Refuse what the databases cannot store: NUL characters and lone surrogates."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode") from exc
    return value


def _label(value: str) -> str:
    if "." in value:
        raise ValueError("namespace labels cannot contain '.'")
    return _text(value)


def _json(value: Any) -> Any:
    """Every string in a JSON value (keys too) must be storable."""
    if isinstance(value, str):
        _text(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _text(k)
            _json(v)
    elif isinstance(value, list):
        for v in value:
            _json(v)
    return value


Label = Annotated[str, Field(min_length=1, max_length=MAX_LABEL), AfterValidator(_label)]
Key = Annotated[str, Field(min_length=1, max_length=MAX_KEY), AfterValidator(_text)]
Namespace = Annotated[list[Label], Field(min_length=1, max_length=MAX_DEPTH)]
Pattern = Annotated[list[Label], Field(max_length=MAX_DEPTH)]
"""A prefix or suffix to match; `*` matches any one label."""
JsonObject = Annotated[dict[str, Any], AfterValidator(_json)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PutItem(_Body):
    namespace: Namespace
    key: Key
    value: JsonObject
    index: Literal[False] | list[Annotated[str, Field(max_length=MAX_LABEL)]] | None = None
    ttl: float | None = Field(None, gt=0, le=MAX_TTL_MINUTES)


class DeleteItem(_Body):
    namespace: Namespace
    key: Key


class SearchItems(_Body):
    namespace_prefix: Pattern = Field(default_factory=list)
    filter: JsonObject | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=1_000_000)
    query: str | None = None
    refresh_ttl: bool | None = None

    @field_validator("query")
    @classmethod
    def _no_semantic_search(cls, value: str | None) -> None:
        if value:
            raise ValueError("semantic search is not configured; search by filter instead")
        return None


class ListNamespaces(_Body):
    prefix: Pattern | None = None
    suffix: Pattern | None = None
    max_depth: int | None = Field(None, ge=1, le=MAX_DEPTH)
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=1_000_000)


def item_store(request: Request) -> BaseStore:
    found: BaseStore = request.app.state.item_store
    return found


Items = Annotated[BaseStore, Depends(item_store)]


@asynccontextmanager
async def open_item_store(settings: Settings, storage: Storage | None) -> AsyncIterator[BaseStore]:
    """The store in the checkpoint database (sharing the checkpointer's Postgres pool)."""
    url = "memory://" if storage and storage.backend == "memory" else settings.checkpoint_url
    pool = storage.pool if storage and storage.backend == "postgres" else None
    async with open_store(url, pool=pool, pool_settings=settings.checkpoint_pool) as store:
        yield store


def _scoped(principal: Principal, labels: list[str]) -> tuple[str, ...]:
    return (f"tenant:{principal.tenant_id}", *labels)


def _utc(at: datetime) -> datetime:
    """SQLite's timestamps are naive UTC."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _item_json(item: Item) -> dict[str, Any]:
    found: dict[str, Any] = {
        "namespace": list(item.namespace[1:]),
        "key": item.key,
        "value": item.value,
        "created_at": _utc(item.created_at).isoformat(),
        "updated_at": _utc(item.updated_at).isoformat(),
    }
    if isinstance(item, SearchItem) and item.score is not None:
        found["score"] = item.score
    return found


async def _guarded(call: Awaitable[T]) -> T:
    """The store's own refusals (bad filter operators, unencodable values) are the caller's."""
    try:
        return await call
    except (ValueError, TypeError, OverflowError, psycopg.DataError) as exc:
        raise Unprocessable(f"the store refused this request: {exc}") from exc


def _dotted(namespace: str) -> list[str]:
    labels = namespace.split(".") if namespace else []
    if not labels:
        raise Unprocessable("namespace: must name at least one label, e.g. 'users.alice'")
    for label in labels:
        if not label or len(label) > MAX_LABEL:
            raise Unprocessable(f"namespace: labels must be 1-{MAX_LABEL} characters")
        try:
            _text(label)
        except ValueError as exc:
            raise Unprocessable(f"namespace: {exc}") from exc
    return labels


async def _found(items: BaseStore, namespace: tuple[str, ...], key: str) -> Item:
    item = await _guarded(items.aget(namespace, key, refresh_ttl=False))
    if item is None:
        raise NotFound(f"item {key!r} not found in namespace {list(namespace[1:])}")
    return item


@router.put("/store/items", status_code=204)
async def put_item(body: PutItem, items: Items, principal: Caller) -> Response:
    """Store or replace an item."""
    ttl = body.ttl if items.supports_ttl else None
    namespace = _scoped(principal, body.namespace)
    await _guarded(items.aput(namespace, body.key, body.value, index=body.index, ttl=ttl))
    return Response(status_code=204)


@router.get("/store/items")
async def get_item(
    items: Items,
    principal: Caller,
    namespace: Annotated[str, Query(max_length=MAX_DEPTH * (MAX_LABEL + 1))],
    key: Annotated[str, Query(min_length=1, max_length=MAX_KEY)],
    refresh_ttl: Annotated[bool | None, Query()] = None,
) -> dict[str, Any]:
    """One item; `namespace` is its labels joined with '.', as the SDK sends it."""
    try:
        _text(key)
    except ValueError as exc:
        raise Unprocessable(f"key: {exc}") from exc
    scoped = _scoped(principal, _dotted(namespace))
    item = await _guarded(items.aget(scoped, key, refresh_ttl=refresh_ttl))
    if item is None:
        raise NotFound(f"item {key!r} not found in namespace {namespace!r}")
    return _item_json(item)


@router.delete("/store/items", status_code=204)
async def delete_item(body: DeleteItem, items: Items, principal: Caller) -> Response:
    namespace = _scoped(principal, body.namespace)
    await _found(items, namespace, body.key)
    await _guarded(items.adelete(namespace, body.key))
    return Response(status_code=204)


@router.post("/store/items/search")
async def search_items(body: SearchItems, items: Items, principal: Caller) -> dict[str, Any]:
    """Items under a namespace prefix, optionally filtered on their values."""
    found = await _guarded(
        items.asearch(
            _scoped(principal, body.namespace_prefix),
            filter=body.filter,
            limit=body.limit,
            offset=body.offset,
            refresh_ttl=body.refresh_ttl,
        )
    )
    return {"items": [_item_json(i) for i in found]}


@router.post("/store/namespaces")
async def list_namespaces(body: ListNamespaces, items: Items, principal: Caller) -> dict[str, Any]:
    """The caller's namespaces, matching a prefix and/or suffix, cut at `max_depth`."""
    found = await _guarded(
        items.alist_namespaces(
            prefix=_scoped(principal, body.prefix or []),
            suffix=tuple(body.suffix) if body.suffix else None,
            max_depth=None if body.max_depth is None else body.max_depth + 1,
            limit=body.limit,
            offset=body.offset,
        )
    )
    return {"namespaces": [list(ns[1:]) for ns in found]}
