"""HTTP errors: every failure is a JSON body `{"error", "message"}` with the right status.

Bad input is always a 4xx that says what was wrong: validation failures list each field,
unreadable JSON says where, wrong content types get 415 and oversized bodies 413. Only a
bug in Keel itself gives a 500, and then without internals.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError as SQLAlchemyOperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "ApiError",
    "BodyGuard",
    "Conflict",
    "Gone",
    "NotFound",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
    "install_error_handlers",
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
        return JSONResponse(
            _body(names.get(exc.status_code, "http_error"), str(exc.detail)),
            exc.status_code,
            headers=getattr(exc, "headers", None),
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
        await self.app(scope, self._capped(receive, send), send)

    def _capped(self, receive: Receive, send: Send) -> Receive:
        seen = 0

        async def capped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise StarletteHTTPException(
                        413, f"bodies are limited to {self.max_bytes} bytes"
                    )
            return message

        return capped


async def _reply(send: Send, status: int, error: str, message: str) -> None:
    import orjson

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
