"""Request ids: accept a well-formed X-Request-ID or make one, echo it, expose it to logs.

Also the trace id of the request or job being traced, when the service traces (set by
app.observability.tracing), so that log lines and problem bodies name it beside the request id.
"""

import re
import secrets
from contextvars import ContextVar, Token

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
# Ids from outside are echoed into headers and logs, so only a short, plain token is trusted:
# anything else (too long, spaces, control characters, quotes) is replaced, never echoed.
_VALID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")

_request_id: ContextVar[str] = ContextVar("request_id", default="-")
_trace_id: ContextVar[str | None] = ContextVar("trace_id", default=None)


def current_request_id() -> str:
    """The id of the request being served, or "-" outside a request."""
    return _request_id.get()


def current_trace_id() -> str | None:
    """The W3C trace id (32 hex digits) of the request or job being traced, else None."""
    return _trace_id.get()


def set_trace_id(trace_id: str) -> Token[str | None]:
    return _trace_id.set(trace_id)


def new_request_id() -> str:
    return secrets.token_hex(16)


class RequestIdMiddleware:
    """Pure ASGI, outermost: every response, errors included, carries the id it was logged under."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # A plain loop: this runs for every request, and a generator expression costs a frame.
        inbound = b""
        for name, value in scope["headers"]:
            if name == HEADER:
                inbound = value
                break
        request_id = inbound.decode("ascii") if _VALID.fullmatch(inbound) else new_request_id()
        header = (HEADER, request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = _request_id.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _request_id.reset(token)
