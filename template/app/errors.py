"""Every failure becomes a JSON problem body (RFC 9457) with the request id, never a traceback."""

import logging
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.request_id import current_request_id, current_trace_id
from app.responses import encode_json

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


class FieldError(BaseModel):
    """One reason a request was refused: where in the request, and what is wrong there."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """The body of every error response (RFC 9457 problem details), for the OpenAPI document."""

    type: str
    title: str
    status: int
    detail: str
    request_id: str
    # When the service traces requests: the trace to look up in the tracing backend.
    trace_id: str | None = None
    # 422 only: each invalid part of the request.
    errors: list[FieldError] | None = None


class ServiceUnavailableError(Exception):
    """A dependency is down or saturated: answer 503 and say when to retry, instead of queueing."""

    def __init__(self, detail: str, *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


def problem(
    status: int, detail: str | None = None, headers: Mapping[str, str] | None = None, **extra: Any
) -> Response:
    """A problem+json response; `title` is the standard phrase of the status."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail or HTTPStatus(status).description,
        "request_id": current_request_id(),
    }
    trace_id = current_trace_id()
    if trace_id is not None:
        body["trace_id"] = trace_id
    body.update(extra)
    return Response(encode_json(body), status, headers=headers, media_type=PROBLEM_JSON)


async def _http_exception(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):
        raise exc
    headers = exc.headers
    if exc.status_code == 405:
        allow = _allowed_methods(request, (headers or {}).get("Allow", ""))
        headers = {**(headers or {}), "Allow": allow}
    return problem(exc.status_code, exc.detail, headers=headers)


def _allowed_methods(request: Request, allow: str) -> str:
    """Every method the API serves on this path. Starlette's 405 names only the first route's:
    `Allow: GET` for GET /orders, though POST /orders exists (RFC 9110 wants them all). The
    OpenAPI document knows them all (it is built once and kept); probes stay as Starlette says."""
    methods = {method.strip() for method in allow.split(",") if method.strip()}
    path = request.url.path
    for template, operations in request.app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)), path):
            methods |= {method.upper() for method in operations}
    return ", ".join(sorted(methods))


async def _validation_error(_request: Request, exc: Exception) -> Response:
    if not isinstance(exc, RequestValidationError):
        raise exc
    errors = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    return problem(422, "The request is not valid; see errors.", errors=errors)


async def _service_unavailable(_request: Request, exc: Exception) -> Response:
    if not isinstance(exc, ServiceUnavailableError):
        raise exc
    return problem(503, exc.detail, headers={"Retry-After": str(exc.retry_after)})


# Each handler is registered for one exception type; the isinstance checks narrow it for mypy,
# since Starlette types every handler as taking a plain Exception.
def add_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ServiceUnavailableError, _service_unavailable)


class CrashMiddleware:
    """Pure ASGI, inside the request-id and timing middleware: an unhandled exception is logged once
    with its traceback and answered with a 500 problem body, so the 500 is timed, logged and carries
    the request id like any other response (Starlette's own handler sits outside all of that).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception:
            log.exception("unhandled error")
            if started:
                # Headers are gone already; the server closes the connection mid-body.
                raise
            await problem(500, "The server failed to handle the request.")(scope, receive, send)
