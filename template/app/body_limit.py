"""A limit on request body size: 413 before the body is read past it, whatever the client sends.

A declared Content-Length over the limit is refused before a byte of the body is read. A body
without one (chunked) is counted as it arrives; at the first byte past the limit the client gets
the 413 and the app, still reading, is told the client went away, so nothing is buffered beyond
the limit and nothing the app sends afterwards reaches the client.
"""

from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import problem


class BodyLimitMiddleware:
    """Pure ASGI; innermost, so the 413 is timed, logged and carries the request id."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def _too_large(self) -> Response:
        return problem(413, f"The request body is larger than {self.max_body_bytes} bytes.")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, chunked = _framing(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._too_large()(scope, receive, send)
            return
        if not chunked and scope.get("http_version") in _LENGTH_FRAMED:
            # HTTP/1 without Transfer-Encoding: the server hands the app exactly the declared
            # length (none without Content-Length), already checked. Nothing to count, so no
            # wrappers: each cost every request, a GET included, a few us in the served benchmark.
            await self.app(scope, receive, send)
            return
        received = 0
        refused = responding = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    refused = True
                    # An app that answers while it reads has its own answer on the way already.
                    if not responding:
                        await self._too_large()(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def send_unless_refused(message: Message) -> None:
            nonlocal responding
            if not refused:
                responding = True
                await send(message)

        try:
            await self.app(scope, counting_receive, send_unless_refused)
        except ClientDisconnect:
            # What reading the rest of a refused body raises (FastAPI's own body parsing turns it
            # into a 400, which send_unless_refused drops): the 413 has gone out already.
            if not refused:
                raise


# HTTP versions in which Content-Length, when there is no Transfer-Encoding, is the body's length:
# the server reads that many bytes as the body, and what follows is the next request.
_LENGTH_FRAMED = frozenset({"1.0", "1.1"})


def _framing(scope: Scope) -> tuple[int | None, bool]:
    """The declared Content-Length (None if absent or malformed), and whether the body is chunked
    (a Transfer-Encoding header: its length is known only once read)."""
    declared = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = None  # the server refuses a malformed one before the app sees it
        elif name == b"transfer-encoding":
            chunked = True
    return declared, chunked
