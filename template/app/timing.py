"""Per-request timing: the Server-Timing header, the access log line and the slow-request warning.

Lower layers report what a request spent on them through `current_stats()`, a per-request object
in a ContextVar: the database layer counts queries, the cache says hit or miss. They mutate that
object; they never set the ContextVar, so the value survives the task and greenlet hops they make.
"""

import logging
from contextvars import ContextVar
from dataclasses import dataclass, field
from time import perf_counter, time
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.access_log import AccessLog

log = logging.getLogger(__name__)


@dataclass
class RequestStats:
    """What one request spent outside the app's own code."""

    db_queries: int = 0
    db_seconds: float = 0.0
    # Time spent waiting for a pooled connection (None: the request took none), and whether the
    # wait ended in the pool's timeout (a 503).
    db_wait_seconds: float | None = None
    db_pool_timeout: bool = False
    cache: str | None = None
    # "ok" or "failed" when the request handed a job to the queue.
    enqueue: str | None = None
    # (partner, outcome, seconds) of each outbound call to a partner.
    partner_calls: list[tuple[str, str, float]] = field(default_factory=list)

    def server_timing(self, app_seconds: float) -> str:
        """The W3C Server-Timing header value: `app;dur=..`, then `db` and `cache` when used."""
        metrics = [f"app;dur={app_seconds * 1000:.1f}"]
        if self.db_queries:
            plural = "query" if self.db_queries == 1 else "queries"
            metrics.append(f'db;dur={self.db_seconds * 1000:.1f};desc="{self.db_queries} {plural}"')
        if self.cache is not None:
            metrics.append(f"cache;desc={self.cache}")
        return ", ".join(metrics)


_stats: ContextVar[RequestStats | None] = ContextVar("request_stats", default=None)


def current_stats() -> RequestStats:
    """The stats of the request being served (a throwaway object outside requests)."""
    return _stats.get() or RequestStats()


class RequestObserver(Protocol):
    """Aggregates requests (app.observability.metrics.Metrics); told of each one twice."""

    def request_started(self) -> None: ...

    def request_finished(
        self, scope: Scope, status: int, seconds: float, stats: RequestStats
    ) -> None: ...


class RequestTracer(Protocol):
    """Makes the request's span (app.observability.tracing.RequestTracer): started before the
    app runs, so that what the request does happens inside it; ended after the access log line,
    so that the line carries the trace id."""

    def request_started(self, scope: Scope) -> object: ...

    def request_finished(
        self, started: object, scope: Scope, status: int, stats: RequestStats
    ) -> None: ...


class TimingMiddleware:
    """Pure ASGI: adds Server-Timing when the response starts, logs and reports when it ends."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        access_log: AccessLog | None,
        slow_request_ms: float,
        observer: RequestObserver | None = None,
        tracer: RequestTracer | None = None,
    ) -> None:
        self.app = app
        self.access_log = access_log
        self.slow_request_seconds = slow_request_ms / 1000
        self.observer = observer
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        stats = RequestStats()
        status = 500
        timing = ""

        async def send_timed(message: Message) -> None:
            nonlocal status, timing
            if message["type"] == "http.response.start":
                status = message["status"]
                timing = stats.server_timing(perf_counter() - started)
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"server-timing", timing.encode()),
                ]
            await send(message)

        observer = self.observer
        if observer is not None:
            observer.request_started()
        tracer = self.tracer
        span = tracer.request_started(scope) if tracer is not None else None
        token = _stats.set(stats)
        try:
            await self.app(scope, receive, send_timed)
        finally:
            _stats.reset(token)
            seconds = perf_counter() - started
            self._log(scope, status, seconds, timing)
            # After routing, so scope["route"] names the route template (no second match).
            if observer is not None:
                observer.request_finished(scope, status, seconds, stats)
            if tracer is not None:
                tracer.request_finished(span, scope, status, stats)

    def _log(self, scope: Scope, status: int, seconds: float, timing: str) -> None:
        if self.access_log is not None:
            self.access_log.write(time(), scope["method"], scope["path"], status, seconds)
        if seconds >= self.slow_request_seconds:
            fields = {
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round(seconds * 1000, 1),
                "server_timing": timing,
            }
            log.warning("slow request", extra=fields)
