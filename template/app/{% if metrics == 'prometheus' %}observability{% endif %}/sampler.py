"""A per-process probe: event-loop lag, and the gauges that only a process itself can read.

Every `interval` the probe asks the loop to wake it and records how late it woke: a callback that
blocks the loop (a sync call in an async route, a CPU-heavy serialization) shows up as lag, on any
event loop, uvloop included. The same tick copies what the pools and the breaker hold into gauges,
and turns the breaker's running totals into counters: a scrape reads files, so another process's
pool can only be seen through what that process wrote.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from app.observability.metrics import Metrics


class Breaker(Protocol):
    """What the probe reads from a circuit breaker (app.breaker.CircuitBreaker)."""

    @property
    def state(self) -> str: ...

    @property
    def failures_total(self) -> int: ...

    @property
    def opens_total(self) -> int: ...


BREAKER_STATES = ("closed", "open", "half-open")


class Sampler:
    def __init__(
        self,
        metrics: Metrics,
        *,
        interval: float,
        pool: Callable[[], tuple[int, int, int]] | None = None,
        breaker: Breaker | None = None,
    ) -> None:
        self.metrics = metrics
        self.interval = interval
        self.pool = pool
        self.breaker = breaker
        self._breaker_failures = 0
        self._breaker_opens = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.metrics.loop_lag.observe(max(0.0, loop.time() - due))
            self.sample()

    def sample(self) -> None:
        """Copy the pool's and the breaker's state into the metrics (also once at start)."""
        metrics = self.metrics
        if self.pool is not None:
            used, idle, maximum = self.pool()  # app.db.pool_usage
            metrics.db_connections.labels("used").set(used)
            metrics.db_connections.labels("idle").set(idle)
            metrics.db_connections_max.set(maximum)
        if self.breaker is not None:
            breaker = self.breaker
            for state in BREAKER_STATES:
                metrics.circuit_state.labels(state).set(1 if breaker.state == state else 0)
            # The breaker keeps plain running totals (no metrics code on the cache's path);
            # counters take the difference since the last tick.
            metrics.cache_errors.inc(breaker.failures_total - self._breaker_failures)
            metrics.circuit_opens.inc(breaker.opens_total - self._breaker_opens)
            self._breaker_failures = breaker.failures_total
            self._breaker_opens = breaker.opens_total


@contextlib.asynccontextmanager
async def sampling(sampler: Sampler) -> AsyncIterator[Sampler]:
    """Run the probe for the lifespan of the app; it stops before the pools it reads close."""
    sampler.sample()
    task = asyncio.create_task(sampler.run(), name="metrics-sampler")
    try:
        yield sampler
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
