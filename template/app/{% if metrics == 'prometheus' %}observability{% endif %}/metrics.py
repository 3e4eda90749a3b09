"""The service's Prometheus metrics, and how one finished request becomes samples in them.

Names and buckets follow OpenTelemetry's semantic conventions where one exists
(`http.server.request.duration`, `db.client.connection.*`), in Prometheus spelling. Everything a
request spent is already gathered in its RequestStats (app.timing) for Server-Timing: the
middleware hands that object over once the response is sent, so the database, cache, queue and
partner code never call into this module, and recording is one step per request.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import Scope

from app.observability import multiprocess
from app.timing import RequestStats

# OpenTelemetry's advice for http.server.request.duration, in seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
# Scheduling delay of the loop-lag probe: a healthy loop stays under a millisecond.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
QUERY_COUNT_BUCKETS = (0, 1, 2, 3, 5, 8, 13, 21, 34, 55)
# Requests that matched no route share one label value, so scanners cannot grow the series count.
UNMATCHED_ROUTE = "unmatched"


class Metrics:
    """Every metric of one process; built in each worker by create_app, never at import."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        # In multiprocess mode (app.observability.multiprocess) values live in files and the
        # registry is not what a scrape reads; None keeps a rebuilt app from clashing with itself.
        r = registry
        self.registry = registry
        self.request_duration = Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests, from the first byte received to the last sent.",
            ["http_request_method", "http_route", "http_response_status_code"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.active_requests = Gauge(
            "http_server_active_requests",
            "HTTP requests being served now.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.db_queries = Histogram(
            "db_client_queries_per_request",
            "Database statements one HTTP request ran.",
            ["http_route"],
            buckets=QUERY_COUNT_BUCKETS,
            registry=r,
        )
        self.db_duration = Histogram(
            "db_client_query_duration_per_request_seconds",
            "Time one HTTP request spent in database statements.",
            ["http_route"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.db_wait = Histogram(
            "db_client_connection_wait_time_seconds",
            "Time a request waited for a pooled database connection.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.db_timeouts = Counter(
            "db_client_connection_timeouts",
            "Requests that found no free pooled connection in time (answered 503).",
            registry=r,
        )
        self.db_connections = Gauge(
            "db_client_connection_count",
            "Pooled database connections by state, summed over live processes.",
            ["state"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.db_connections_max = Gauge(
            "db_client_connection_max",
            "The most connections the pools may open, summed over live processes.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.cache_requests = Counter(
            "cache_requests",
            "Cache lookups by result (hit or miss; a skipped or failed lookup is a miss).",
            ["result"],
            registry=r,
        )
        self.cache_errors = Counter(
            "cache_errors", "Cache calls that failed (the request went on without it).", registry=r
        )
        self.circuit_opens = Counter(
            "cache_circuit_opens", "Times the cache's circuit breaker opened.", registry=r
        )
        self.circuit_state = Gauge(
            "cache_circuit_state",
            "Processes whose cache circuit breaker is in each state.",
            ["state"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.enqueued = Counter(
            "queue_enqueued",
            "Jobs handed to the queue, by outcome (ok or failed).",
            ["outcome"],
            registry=r,
        )
        self.partner_duration = Histogram(
            "http_client_request_duration_seconds",
            "Duration of calls to partner services, by partner and outcome.",
            ["partner", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.loop_lag = Histogram(
            "process_event_loop_lag_seconds",
            "How late the event loop ran a callback it was asked to run (blocking shows here).",
            buckets=LAG_BUCKETS,
            registry=r,
        )

    def request_started(self) -> None:
        self.active_requests.inc()

    def request_finished(
        self, scope: Scope, status: int, seconds: float, stats: RequestStats
    ) -> None:
        """Record one request: its duration by route template, and what its stats gathered."""
        self.active_requests.dec()
        route = scope.get("route")
        # The template ("/orders/{order_id}"), set by the router: never the raw path.
        template = getattr(route, "path", None) or UNMATCHED_ROUTE
        self.request_duration.labels(scope["method"], template, str(status)).observe(seconds)
        if stats.db_queries:
            self.db_queries.labels(template).observe(stats.db_queries)
            self.db_duration.labels(template).observe(stats.db_seconds)
        if stats.db_wait_seconds is not None:
            self.db_wait.observe(stats.db_wait_seconds)
        if stats.db_pool_timeout:
            self.db_timeouts.inc()
        if stats.cache is not None:
            self.cache_requests.labels("hit" if stats.cache == "hit" else "miss").inc()
        if stats.enqueue is not None:
            self.enqueued.labels(stats.enqueue).inc()
        for partner, outcome, call_seconds in stats.partner_calls:
            self.partner_duration.labels(partner, outcome).observe(call_seconds)


def metrics_for_this_process() -> Metrics:
    """Under `serve`, values go to the shared directory; alone (tests), to a registry of its own."""
    return Metrics(None if multiprocess.directory() else CollectorRegistry())
