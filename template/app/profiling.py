"""Per-request profiles in development: `?profile=1` answers with pyinstrument's report instead.

With PROFILE_REQUESTS on (refused in production, see app.settings), a request whose query string
carries `profile=1` runs as usual, but its response is dropped and the client gets pyinstrument's
HTML report of that one request; `profile=text` gives the text report, for curl. A line that holds
the event loop (a sync call in an async route) shows up with its own time, where the loop-lag
metric only says that something did. pyinstrument is a dev dependency: it is imported on the
first profiled request, so production never imports it.
"""

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from anyio import to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from pyinstrument import Profiler

# The values of the `profile` query parameter that ask for a profile, and the report's type.
REPORTS = {
    "1": "text/html; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "text": "text/plain; charset=utf-8",
}


class ProfilingMiddleware:
    """Runs a request under pyinstrument when it asks for a profile; add it outermost."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = report_asked_for(scope)
        if content_type is None:
            await self.app(scope, receive, send)
            return
        # In a thread: the first call imports pyinstrument, which reads its files from disk.
        profiler = await to_thread.run_sync(new_profiler)
        profiler.start()
        try:
            await self.app(scope, receive, drop)
        finally:
            profiler.stop()
        # In a thread too: the HTML renderer reads its scripts from disk, and either renderer
        # works through every sample, which takes long enough to stall other requests.
        report = await to_thread.run_sync(render, profiler, content_type)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(report)).encode()),
                    # A report of one request, never one to serve again from a cache.
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": report})


def report_asked_for(scope: Scope) -> str | None:
    """The content type of the report this request asks for, None for no profile."""
    if scope["type"] != "http":
        return None
    query = parse_qsl(scope["query_string"].decode("latin-1"))
    return REPORTS.get(dict(query).get("profile", ""))


def new_profiler() -> "Profiler":
    # Imported here, not at the top: production installs no dev dependencies.
    from pyinstrument import Profiler

    # "enabled": time a request spends awaiting is charged to the line that awaited, not to the
    # event loop or to whatever other request ran meanwhile.
    return Profiler(async_mode="enabled")


def render(profiler: "Profiler", content_type: str) -> bytes:
    if content_type.startswith("text/html"):
        return profiler.output_html().encode()
    return profiler.output_text(unicode=True).encode()


async def drop(message: Message) -> None:
    """The send of a profiled request: its own response is replaced by the report."""
