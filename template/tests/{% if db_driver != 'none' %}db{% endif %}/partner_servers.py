"""Real HTTP/1.1 partner APIs for the quote tests: loopback TCP servers that do as they are told.

Each server records what it was asked and, in one journal shared by both, when a request arrived,
was answered, or was abandoned by the client. A test sets how it behaves before the request.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import anyio
from anyio.abc import Listener, SocketAttribute, SocketStream, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream

Answer = Callable[[dict[str, Any]], dict[str, Any]]
# What a stream raises when the other side has gone; a partner then just stops serving it.
GONE = (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError)
MAX_HEAD = 16_384


@dataclass
class Received:
    method: str
    path: str
    body: dict[str, Any]
    # Lower-cased names; not compared, so tests state only the request they care about.
    headers: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass
class PartnerServer:
    """One partner API on a free loopback port."""

    name: str
    answer: Answer
    journal: list[str]
    # Behaviour, set by the test: answer once `until` is set (a barrier, or never), with this
    # status, and with `body` instead of the real answer when given.
    until: anyio.Event | None = None
    status: int = 200
    body: bytes | None = None
    url: str = ""
    received: list[Received] = field(default_factory=list)
    arrived: anyio.Event = field(default_factory=anyio.Event)
    abandoned: anyio.Event = field(default_factory=anyio.Event)
    _listening: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    _closed: anyio.Event = field(default_factory=anyio.Event)
    # Connections open now; the event is set each time the last one closes.
    _open: int = 0
    _none_open: anyio.Event = field(default_factory=anyio.Event)

    async def start(self, servers: TaskGroup) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        # anyio's typed attributes, not Django's QuerySet.extra.
        port = listener.extra(SocketAttribute.local_port)  # noqa: S610
        self.url = f"http://127.0.0.1:{port}"
        servers.start_soon(self._listen, listener)

    async def stop_listening(self) -> None:
        """Close the port: connections to it are refused from now on."""
        self._listening.cancel()
        await self._closed.wait()

    async def _listen(self, listener: Listener[SocketStream]) -> None:
        async with listener:
            with self._listening:
                await listener.serve(self._serve)
        self._closed.set()

    async def all_connections_closed(self) -> None:
        """Until no client connection to this partner is open (what a client that gave up on it
        leaves behind, whether its deadline passed before, during or after sending)."""
        while self._open:
            self._none_open = anyio.Event()
            await self._none_open.wait()

    async def _serve(self, stream: SocketStream) -> None:
        self._open += 1
        try:
            async with stream:
                buffered = BufferedByteReceiveStream(stream)
                try:
                    # HTTP/1.1 keeps the connection for the client's next request.
                    while received := await _read_request(buffered):
                        if not await self._respond(received, stream, buffered):
                            return
                except GONE:
                    return
        finally:
            self._open -= 1
            if not self._open:
                self._none_open.set()

    async def _respond(
        self, received: Received, stream: SocketStream, buffered: BufferedByteReceiveStream
    ) -> bool:
        self.received.append(received)
        self.journal.append(f"{self.name} arrived")
        self.arrived.set()
        if self.until is not None and not await _wait_unless_abandoned(self.until, buffered):
            self.journal.append(f"{self.name} abandoned")
            self.abandoned.set()
            return False
        payload = self.body or json.dumps(self.answer(received.body)).encode()
        head = (
            f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        await stream.send(head.encode() + payload)
        self.journal.append(f"{self.name} answered")
        return True


async def _read_request(stream: BufferedByteReceiveStream) -> Received | None:
    """The next request on this connection, or None when the client closed it in between."""
    try:
        head = await stream.receive_until(b"\r\n\r\n", MAX_HEAD)
    except GONE:
        return None
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, path, _version = request_line.split(" ")
    headers = {
        name.strip().lower(): value.strip()
        for name, value in (line.split(":", 1) for line in header_lines)
    }
    body = await stream.receive_exactly(int(headers.get("content-length", "0")))
    return Received(method, path, json.loads(body), headers)


async def _wait_unless_abandoned(until: anyio.Event, stream: BufferedByteReceiveStream) -> bool:
    """Wait for `until`; False if the client closed the connection first (it gave up)."""
    abandoned = False
    async with anyio.create_task_group() as waiting:

        async def watch_the_client() -> None:
            nonlocal abandoned
            try:
                await stream.receive()
            except GONE:
                abandoned = True
                waiting.cancel_scope.cancel()

        waiting.start_soon(watch_the_client)
        await until.wait()
        waiting.cancel_scope.cancel()
    return not abandoned
