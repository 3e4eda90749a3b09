"""The blocking check of conftest.py fails a request whose async code blocks the event loop.

The routes here stand in for application code: the check watches this module as it watches app/.
Each blocking route makes its request raise BlockingError, so a test that makes such a request
fails; the same work awaited, or handed to a thread, passes.
"""

import asyncio
import http.server
import threading
import time
import urllib.request
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx2
import pytest
from anyio import to_thread
from blockbuster import BlockingError
from fastapi import FastAPI

pytestmark = pytest.mark.anyio

# Long enough to stall every other request of a real worker, short enough not to slow the suite.
BLOCK_SECONDS = 0.01


class Answers(http.server.BaseHTTPRequestHandler):
    """A partner that answers every GET with 200 "ok", on loopback."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        """Silent: the base class writes a line per request to stderr."""


@pytest.fixture
def partner_url() -> Iterator[str]:
    """An HTTP server in a thread of its own, so a sync call to it would really succeed."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def blocking_checked_modules(blocking_checked_modules: list[str]) -> list[str]:
    return [*blocking_checked_modules, __name__]


@pytest.fixture
def app(partner_url: str) -> FastAPI:
    app = FastAPI()

    # Each of these holds the event loop, and with it every other request of the worker.

    async def sleeps() -> None:
        time.sleep(BLOCK_SECONDS)  # noqa: ASYNC251

    async def reads_a_file() -> None:
        Path(__file__).read_text()  # noqa: ASYNC240

    async def calls_with_urllib() -> None:
        with urllib.request.urlopen(partner_url, timeout=5) as response:  # noqa: ASYNC210, S310
            response.read()

    async def calls_with_a_sync_client() -> None:
        # Lint cannot see this one: flake8-async knows httpx's blocking calls, not httpx2's.
        httpx2.get(partner_url, timeout=5)

    # The same work, without holding the loop.

    async def awaits() -> None:
        await asyncio.sleep(BLOCK_SECONDS)

    async def sleeps_in_a_thread() -> None:
        await to_thread.run_sync(time.sleep, BLOCK_SECONDS)

    async def reads_a_file_in_a_thread() -> None:
        await to_thread.run_sync(Path(__file__).read_text)

    async def calls_in_a_thread() -> None:
        await to_thread.run_sync(partial(httpx2.get, partner_url, timeout=5))

    async def calls_with_the_async_client() -> None:
        async with httpx2.AsyncClient(timeout=5) as client:
            await client.get(partner_url)

    for route in [
        sleeps,
        reads_a_file,
        calls_with_urllib,
        calls_with_a_sync_client,
        awaits,
        sleeps_in_a_thread,
        reads_a_file_in_a_thread,
        calls_in_a_thread,
        calls_with_the_async_client,
    ]:
        app.add_api_route(f"/{route.__name__}", route)
    return app


# blockbuster raises in socket.create_connection, past its cleanup (which catches OSError only):
# the socket it made is left to the garbage collector, which warns about it.
SOCKET_LEFT_TO_GC = pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")


@pytest.mark.parametrize(
    ("path", "blocking_call"),
    [
        ("/sleeps", "time.sleep"),
        ("/reads_a_file", "io.TextIOWrapper.read"),
        pytest.param("/calls_with_urllib", "socket.socket.connect", marks=SOCKET_LEFT_TO_GC),
        pytest.param("/calls_with_a_sync_client", "socket.socket.connect", marks=SOCKET_LEFT_TO_GC),
    ],
)
async def test_a_blocking_call_in_an_async_route_fails_the_request(
    client: httpx2.AsyncClient, path: str, blocking_call: str
) -> None:
    with pytest.raises(BlockingError, match=f"Blocking call to {blocking_call}"):
        await client.get(path)


@pytest.mark.parametrize(
    "path",
    [
        "/awaits",
        "/sleeps_in_a_thread",
        "/reads_a_file_in_a_thread",
        "/calls_in_a_thread",
        "/calls_with_the_async_client",
    ],
)
async def test_awaiting_or_a_thread_passes(client: httpx2.AsyncClient, path: str) -> None:
    response = await client.get(path)

    assert response.status_code == 200


def test_outside_the_event_loop_nothing_is_checked(partner_url: str) -> None:
    """Sync code run outside the loop (fixtures, scripts, sync tests) may block as it likes."""
    time.sleep(BLOCK_SECONDS)

    assert httpx2.get(partner_url, timeout=5).text == "ok"
