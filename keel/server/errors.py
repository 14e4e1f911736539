"""HTTP errors: every failure is a JSON body `{"error", "message"}` with the right status.

Bad input is always a 4xx that says what was wrong: validation failures list each field,
unreadable JSON says where, wrong content types get 415 and oversized bodies 413. Only a
bug in Keel itself gives a 500, and then without internals.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import psycopg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError as SQLAlchemyOperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "COMMON_ERRORS",
    "ApiError",
    "BodyGuard",
    "Conflict",
    "ErrorBody",
    "Gone",
    "NotFound",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
    "install_error_handlers",
    "responses",
    "unusable_text",
]

log = structlog.get_logger("keel.server")


class ApiError(Exception):
    """An error the client caused or must handle; rendered as JSON with `status`."""

    status = 400
    error = "bad_request"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class Unauthorized(ApiError):
    status, error = 401, "unauthorized"


class Forbidden(ApiError):
    status, error = 403, "forbidden"


class NotFound(ApiError):
    status, error = 404, "not_found"


class Conflict(ApiError):
    status, error = 409, "conflict"


class Gone(ApiError):
    """What the request names existed but is no longer kept (a stream's older events)."""

    status, error = 410, "gone"


class Unprocessable(ApiError):
    status, error = 422, "invalid_request"


class TooManyRequests(ApiError):
    status, error = 429, "too_many_requests"


class Unavailable(ApiError):
    status, error = 503, "service_unavailable"


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer: what kind (`error`), what was wrong (`message`), and for a 422
    of the body's fields, each bad field."""

    error: str
    message: str
    fields: list[FieldError] | None = None


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route answers (all with `ErrorBody`)."""
    return {status: {"model": ErrorBody, "description": _MEANING[status]} for status in statuses}


_MEANING = {
    400: "The body is not valid JSON.",
    401: "No valid API key (when keys are required).",
    404: "Not found, or not the caller's (another tenant's things do not exist for it).",
    409: "In conflict with the current state (a run in progress, an id taken).",
    410: "What the request names is no longer kept (a stream's older events).",
    413: "The body is over the size limit.",
    415: "The body is not JSON.",
    422: "The request is well-formed but invalid; `fields` lists each bad field.",
    429: "Over the tenant's run rate or the queue's bound; see `Retry-After`.",
    503: "The database or queue is unreachable, or a run did not stop in time; retry.",
}
COMMON_ERRORS = responses(400, 401, 404, 413, 415, 422, 503)
"""What any route may answer: declared on every router."""


def _body(error: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": error, "message": message, **extra}


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    found = []
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ())]
        found.append({"field": ".".join(loc), "message": str(e.get("msg", "invalid"))})
    return found


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception to a JSON response."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(_body(exc.error, exc.message), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = _field_errors(exc)
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return JSONResponse(_body("invalid_json", "the request body is not valid JSON"), 400)
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
        return JSONResponse(_body("invalid_request", summary, fields=fields), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        names = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed(app, request))
        return JSONResponse(
            _body(names.get(exc.status_code, "http_error"), str(exc.detail)),
            exc.status_code,
            headers=headers,
        )

    @app.exception_handler(SQLAlchemyOperationalError)
    @app.exception_handler(psycopg.OperationalError)
    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("api.database_unavailable", path=request.url.path, error=str(exc)[:200])
        body = _body("service_unavailable", "the database is not reachable; retry shortly")
        return JSONResponse(body, 503, headers={"Retry-After": "2"})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("api.unexpected_error", path=request.url.path)
        return JSONResponse(_body("internal_error", "an unexpected error occurred"), 500)


def _allowed(app: FastAPI, request: Request) -> list[str]:
    """Every method the API serves at this path, from its OpenAPI schema (Starlette's 405
    sends no `Allow`, or names only the first route's methods)."""
    table: list[tuple[re.Pattern[str], set[str]]] | None = getattr(app.state, "allow", None)
    if table is None:
        table = [
            (
                re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$"),
                {m.upper() for m in ops},
            )
            for path, ops in app.openapi().get("paths", {}).items()
        ]
        app.state.allow = table
    methods = set().union(*(ms for rx, ms in table if rx.match(request.url.path)))
    return sorted(methods)


class BodyGuard:
    """ASGI middleware: refuse oversized bodies (413) and non-JSON bodies (415) up front."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _reply(
                send, 413, "payload_too_large", f"bodies are limited to {self.max_bytes} bytes"
            )
            return
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        has_body = (length is None and "transfer-encoding" in headers) or (length or "0") != "0"
        if has_body and kind != "application/json" and not kind.endswith("+json"):
            await _reply(send, 415, "unsupported_media_type", "send the body as application/json")
            return
        try:
            body = await self._read(receive)
        except StarletteHTTPException as exc:
            await _reply(send, exc.status_code, "payload_too_large", str(exc.detail))
            return
        problem = unusable_text(body)
        if problem is not None:
            await _reply(send, 422, "invalid_request", problem)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes:
        """The whole body (at most `max_bytes`; a 413 past it)."""
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client left: the app sees an empty body and its disconnect
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                raise StarletteHTTPException(413, f"bodies are limited to {self.max_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read up front, once; then the client's own messages (its disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _text_problem(value: Any) -> str | None:
    """What is wrong with the first unstorable string in a parsed JSON value, if any."""
    if isinstance(value, str):
        if "\x00" in value:
            return 'the body contains a NUL character ("\\u0000"), which cannot be stored'
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return (
                'the body contains a lone surrogate escape (such as "\\ud800"): '
                "text must be valid Unicode"
            )
        return None
    items: Any = ()
    if isinstance(value, dict):
        items = (x for kv in value.items() for x in kv)
    elif isinstance(value, list):
        items = value
    for item in items:
        problem = _text_problem(item)
        if problem is not None:
            return problem
    return None


def unusable_text(body: bytes) -> str | None:
    """Why a JSON body's text cannot be stored, or None: it is fine (or not JSON at all,
    which the route's own parsing reports).

    A lone surrogate escape (`"\\ud800"`) is valid JSON but not Unicode: it cannot be
    written as UTF-8, so Postgres refuses it and every later read or answer of it fails.
    NUL (`"\\u0000"`) is refused by Postgres text and JSONB. Both are refused on every
    database, before anything is stored, so a body means the same wherever Keel runs.
    """
    if b"\\u" not in body:
        return None  # neither can be written without an escape
    try:
        parsed = json.loads(body)  # as the routes parse it
    except ValueError:
        return None
    return _text_problem(parsed)


async def _reply(send: Send, status: int, error: str, message: str) -> None:
    body = orjson.dumps(_body(error, message))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


Handler = Callable[[Request], Awaitable[Any]]
