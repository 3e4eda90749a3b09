"""Admission control: past a number of requests in flight, a worker answers 503 at once.

Without it, a worker past its capacity keeps accepting: every request waits its turn on one event
loop (and for a database connection), so every latency grows together until clients time out, and
the work done for them is wasted. With it, the requests admitted keep their latency and the rest
learn at once to retry (503 with Retry-After), which a load balancer can send to another pod.
Probes are never refused: an overloaded pod is not a dead one.
"""

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import problem


class AdmissionMiddleware:
    """Pure ASGI, inside request id and timing (a refusal is logged and timed like any answer)."""

    def __init__(self, app: ASGIApp, *, max_in_flight: int, always_admit: Iterable[str]) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.always_admit = frozenset(always_admit)
        # One event loop per worker process, so a plain counter needs no lock.
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.always_admit:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            refusal = problem(
                503,
                "The service is at capacity; retry shortly.",
                headers={"Retry-After": "1"},
            )
            await refusal(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
