"""After start-up: what lives as long as the process leaves the collector's full passes, and the
youngest generation is collected less often.

A worker holds some hundred thousand objects for its whole life (modules, FastAPI's routes and
models, pydantic's validators, SQLAlchemy's and OpenTelemetry's state). Every full collection
walked all of them to free nothing: measured on the cache-hit project under load, one every second
or so, 75-85 ms each, a loop held that long (the rows' 95 ms p99) and, past the cache's 0.1 s
socket timeout, Redis GETs failing until the circuit breaker opened. Frozen once start-up is
complete (gc.freeze, the standard library's own answer), those objects are never walked again:
full collections then took at most 1.4 ms, and the worker served 11% more cache hits.
"""

import gc
import logging

log = logging.getLogger(__name__)


def freeze_startup_objects() -> None:
    """Collect the garbage start-up left, then freeze everything still alive.

    Objects allocated later are collected as before; a frozen one that becomes garbage is never
    freed, which is why this runs once, after start-up, not per request or per test.
    """
    gc.collect()
    gc.freeze()
    log.debug("heap frozen", extra={"frozen_objects": gc.get_freeze_count()})


# Container objects allocated (net) before a young collection: ten times CPython's 2000. A request
# allocates some hundreds (scope, Request, headers, the response, coroutine frames) and most die
# with it by reference count; a young collection walks the ones alive at that moment, mostly those
# of the requests in flight, and promotes them to be walked again later. Measured on the cache-hit
# project under 32 connections: 2000 -> 20000 served 5% more hits (4122 against 3920 RPS, served
# one after the other) at the same memory (99 MB resident). Older generations keep their settings.
YOUNG_GENERATION_THRESHOLD = 20_000


def collect_young_less_often() -> None:
    """Raise the young generation's threshold; the two older ones stay as CPython sets them."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, old)
