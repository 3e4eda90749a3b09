"""`python -m bench.redis_outage`: what a Redis outage costs a generated service's GET /orders/{id}.

The project with the template's Redis cache (rendered as the benchmark's cache-hit variant) is
served three times, each time with another REDIS_URL: the real Redis (every request a cache hit),
a port that refuses connections, and a listener that accepts connections and never answers (where
only the client's own timeouts help). Each gets the same sequential requests over one keep-alive
connection; the table says what each request cost and whether every one was still a 200. See
bench/README.md, "Redis outage".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx2

from bench import _cache, _projects
from bench._args import positive_int
from bench._check import cache_result
from bench._errors import BenchError
from bench._http import get
from bench._procs import free_port
from bench._run import (
    RESULTS,
    cpu_model,
    prepare_project,
    say,
    template_version,
    uv_binary,
)
from bench._servers import Server, log_tail, start
from tests.services import LOOPBACK

# About 10 s of requests per state: the breaker probes Redis once per 5 s while open, so the
# probes' cost is measured along with the failures that open it.
DEFAULTS = {"requests": 6000, "orders": 50, "items_per_order": 200}
# Small enough for a test suite: every step runs, none of the numbers mean much.
SMOKE = {"requests": 30, "orders": 10, "items_per_order": 20}

# The main benchmark's cache-hit variant: the default project with the Redis cache (and,
# through answers_for, queue=none, so no worker is needed).
VARIANT = "cache-hit"
STATE_TARGETS = {
    "up": "the throwaway redis-server",
    "refused": "a loopback port that refuses connections",
    "hanging": "a loopback listener that accepts connections and never answers",
}
# Polled until the service answers: /readyz pings Redis directly, not through the cache's breaker,
# so the breaker is still closed for the first measured request. With Redis down it answers 200
# "degraded" (the cache is optional).
READY_PATH = "/readyz"
# The service's cache-free database path (the order list), requested this many times before any
# state is measured: a fresh process pays first-use costs (statement compilation, the first
# checkout, first responses) that are no outage's. GET /orders/{id} cannot warm it in an outage
# state without opening the breaker, whose first failures are part of what is measured.
WARMUP_REQUESTS = 50
WARMUP_PATH = "/orders?limit=1"
# Far above the 0.2 s a request can wait on Redis with the template's timeouts (a GET and a SET
# at 0.1 s each; 2 s with a smoke run's SMOKE_CACHE_SETTINGS), far below anything a person would
# wait for: a request this slow is broken.
REQUEST_TIMEOUT_SECONDS = 5.0
# Transport errors after which a state is given up: the service is not answering at all, and
# every further request would only add a timeout to the run.
MAX_TRANSPORT_ERRORS = 5
# How often the hanging listener's thread looks at its stop flag.
ACCEPT_POLL_SECONDS = 0.1
# What the breaker logs (app/breaker.py) each time its circuit opens, closed or half-open before.
BREAKER_OPENED = "circuit opened"

# Run inside the rendered project: the Redis client and breaker settings the service itself builds
# from its environment, rather than numbers copied from the template into this file.
CLIENT_SETTINGS_CODE = """
import json
from app.redis_cache import redis_client
from app.settings import Settings
settings = Settings()
client = redis_client(settings.redis_url.get_secret_value(), settings.cache)
options = client.connection_pool.connection_kwargs
print(json.dumps({
    "connect_timeout": options["socket_connect_timeout"],
    "socket_timeout": options["socket_timeout"],
    "retries": options["retry"].get_retries(),
    "breaker_failures": settings.cache.breaker_failures,
    "breaker_reset": settings.cache.breaker_reset,
}))
"""


@dataclass(frozen=True)
class Options:
    requests: int
    orders: int
    items_per_order: int
    keep: bool
    output: Path
    command: str
    # Added to the project's environment besides CACHE_SETTINGS (smoke runs only).
    cache_settings: dict[str, str]


@dataclass(frozen=True)
class ClientSettings:
    """The service's Redis client and breaker, as its own code builds them."""

    connect_timeout: float
    socket_timeout: float
    retries: int
    breaker_failures: int
    breaker_reset: float


@dataclass(frozen=True)
class Sample:
    """One request: its wall time, its status (or the transport error's name), the cache's word."""

    milliseconds: float
    status: str
    cache: str | None


@dataclass(frozen=True)
class StateResult:
    """The requests of one Redis state, and what the service's log said meanwhile."""

    state: str
    samples: tuple[Sample, ...]
    seconds: float
    breaker_opened: int

    @property
    def statuses(self) -> Counter[str]:
        return Counter(sample.status for sample in self.samples)

    def percentile(self, fraction: float) -> float:
        return percentile([sample.milliseconds for sample in self.samples], fraction)

    def as_slow_as(self, milliseconds: float) -> int:
        return sum(sample.milliseconds >= milliseconds for sample in self.samples)

    def cache_count(self, word: str) -> int:
        return sum(sample.cache == word for sample in self.samples)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest rank: the smallest value with at least `fraction` of all values at or below it."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that refuses every connection for as long as the block runs.

    Bound but never listening: the kernel answers each connect with a reset, as for a Redis that
    is down, and no other process can take the port meanwhile (a port merely found free could be
    taken between picking it and the first request).
    """
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        yield port


class HangingListener:
    """A loopback port that accepts connections and never answers nor closes them.

    The worst Redis outage for a client (a frozen server, a black-holed network): connecting
    succeeds, then nothing comes back, so every call waits for the client's own timeout. A thread
    accepts and holds the connections, so they stay open whatever the kernel's backlog.
    """

    def __init__(self) -> None:
        self._socket = socket.create_server((LOOPBACK, 0))
        self._socket.settimeout(ACCEPT_POLL_SECONDS)
        self.port: int = self._socket.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start_accepting(self) -> None:
        """Start the accepting thread. Call it after the service's process has been started.

        `bench._servers.start` forks with a preexec_fn, which is unsafe while other threads run.
        Until then the kernel completes handshakes on the listening socket by itself.
        """
        self._thread = threading.Thread(target=self._accept, name="hanging-redis", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(connection)

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for connection in self._held:
            connection.close()
        self._socket.close()


def client_settings(uv: str, project: Path, env: dict[str, str]) -> ClientSettings:
    """Run CLIENT_SETTINGS_CODE in the project, in the environment the service gets."""
    command = [uv, "run", "python", "-c", CLIENT_SETTINGS_CODE]
    output = _projects.run(command, project, "reading the Redis client settings", env)
    try:
        return ClientSettings(**json.loads(output))
    except (ValueError, TypeError) as error:
        raise BenchError(
            f"unexpected Redis client settings from the project: {output!r}"
        ) from error


def serve(
    stack: ExitStack,
    uv: str,
    project: Path,
    workdir: Path,
    state: str,
    *,
    database: str,
    redis: str,
    cache_settings: dict[str, str],
) -> Server:
    """Start `uv run serve` with this REDIS_URL (stopped with `stack`, or earlier by the caller)."""
    port = free_port()
    say(f"{state}: starting the service on port {port}, REDIS_URL={redis}")
    server = start(
        f"the service ({state})",
        [uv, "run", "serve"],
        cwd=project,
        env=_projects.serve_env(port, database, redis, cache_settings),
        port=port,
        log=workdir / f"serve-{state}.log",
    )
    stack.callback(server.stop)
    return server


def warm_database_path(server: Server) -> None:
    """GET the order list WARMUP_REQUESTS times: the database path, without the cache."""
    for _ in range(WARMUP_REQUESTS):
        status = get(server.base_url + WARMUP_PATH).status
        if status != 200:
            raise BenchError(f"{server.name}: GET {WARMUP_PATH} answered {status} while warming")


def measure(server: Server, state: str, ids: Sequence[int]) -> StateResult:
    """GET /orders/{id} for each id in turn over one keep-alive connection; stop the service."""
    samples: list[Sample] = []
    errors = 0
    limits = httpx2.Limits(max_connections=1, max_keepalive_connections=1)
    # trust_env off: a proxy from the environment must not sit between the client and loopback.
    with httpx2.Client(
        base_url=server.base_url,
        timeout=REQUEST_TIMEOUT_SECONDS,
        limits=limits,
        trust_env=False,
    ) as client:
        started = time.perf_counter()
        for order_id in ids:
            before = time.perf_counter()
            try:
                response = client.get(f"/orders/{order_id}")
            except httpx2.TransportError as error:
                samples.append(
                    Sample((time.perf_counter() - before) * 1000, type(error).__name__, None)
                )
                if server.process.poll() is not None:
                    raise BenchError(
                        f"{server.name} exited with status {server.process.returncode} while"
                        f" measured; its log ({server.log}) ends with:\n{log_tail(server.log)}"
                    ) from error
                errors += 1
                if errors >= MAX_TRANSPORT_ERRORS:
                    break
                continue
            milliseconds = (time.perf_counter() - before) * 1000
            timing = response.headers.get("server-timing")
            samples.append(Sample(milliseconds, str(response.status_code), cache_result(timing)))
        seconds = time.perf_counter() - started
    server.stop()
    log = server.log.read_text(errors="replace") if server.log.exists() else ""
    return StateResult(state, tuple(samples), seconds, log.count(BREAKER_OPENED))


def problems_in(results: Sequence[StateResult], requests: int) -> list[str]:
    """What fails the run: a request that was not a 200, a state cut short, a non-hit when up."""
    problems = []
    for result in results:
        if len(result.samples) < requests:
            problems.append(
                f"{result.state}: given up after {len(result.samples)} of {requests} requests"
                f" ({MAX_TRANSPORT_ERRORS} transport errors)"
            )
        failed = {status: count for status, count in result.statuses.items() if status != "200"}
        if failed:
            listed = ", ".join(f"{status} x{count}" for status, count in sorted(failed.items()))
            problems.append(f"{result.state}: not every request answered 200 ({listed})")
        if result.state == "up" and result.cache_count("hit") != len(result.samples):
            problems.append(
                f"up: {len(result.samples) - result.cache_count('hit')} responses were no cache"
                " hit (Server-Timing): that row would measure a mix of hits and queries"
            )
    return problems


def run(options: Options) -> tuple[str, list[str]]:
    """Measure the three states; return the markdown (written to options.output) and problems."""
    # Read before this run adds its own load: anything else busy on the machine skews every row.
    load_average = os.getloadavg()[0]
    uv = uv_binary()
    template = template_version()
    ids = [index % options.orders + 1 for index in range(options.requests)]
    workdir = Path(tempfile.mkdtemp(prefix="fastapi-perf-redis-outage-"))
    try:
        project, flags = prepare_project(uv, workdir, VARIANT)
        python_version = _projects.python_version(_projects.interpreter(project))
        with ExitStack() as stack:
            say("starting PostgreSQL")
            database = _projects.start_database(stack)
            say(f"migrating and seeding: {options.orders} orders x {options.items_per_order} items")
            _projects.migrate_and_seed(
                uv,
                project,
                database,
                orders=options.orders,
                items_per_order=options.items_per_order,
            )
            say("starting Redis")
            cache = _cache.start_redis(stack)
            extra = options.cache_settings
            settings = client_settings(
                uv, project, _projects.serve_env(free_port(), database, cache.url, extra)
            )
            results = []

            server = serve(
                stack,
                uv,
                project,
                workdir,
                "up",
                database=database,
                redis=cache.url,
                cache_settings=extra,
            )
            server.wait_ready(READY_PATH)
            warm_database_path(server)
            say(f"up: warming the cache: orders 1..{min(options.orders, options.requests)}")
            _cache.warm(server, min(options.orders, options.requests))
            results.append(measure(server, "up", ids))

            port = stack.enter_context(refused_port())
            refused = f"redis://{LOOPBACK}:{port}/0"
            server = serve(
                stack,
                uv,
                project,
                workdir,
                "refused",
                database=database,
                redis=refused,
                cache_settings=extra,
            )
            server.wait_ready(READY_PATH)
            warm_database_path(server)
            results.append(measure(server, "refused", ids))

            listener = HangingListener()
            stack.callback(listener.close)
            server = serve(
                stack,
                uv,
                project,
                workdir,
                "hanging",
                database=database,
                redis=listener.url,
                cache_settings=extra,
            )
            # Only now: no process is started after this thread (see start_accepting).
            listener.start_accepting()
            server.wait_ready(READY_PATH)
            warm_database_path(server)
            results.append(measure(server, "hanging", ids))
    finally:
        if options.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    for result in results:
        say(
            f"{result.state}: p50 {result.percentile(0.5):.1f} ms, max"
            f" {result.percentile(1.0):.1f} ms, statuses {dict(result.statuses)}"
        )
    context = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{len(os.sched_getaffinity(0))} CPUs ({cpu_model()}), load average"
        f" {load_average:.2f} at the start",
        "command": f"`{options.command}`",
        "template": template,
        "project": f"`fastapi-perf-template new --defaults {flags}`, Python {python_version},"
        f" `uv run serve` with {serve_settings(extra)}; Redis {cache.version}",
        "data": f"{options.orders} orders x {options.items_per_order} items;"
        f" {options.requests} sequential GET /orders/{{id}} per state (ids cycling"
        f" 1..{options.orders}), one keep-alive connection, each state a fresh service process",
    }
    text = markdown(results, settings, context)
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(text)
    # Every request, in order, beside the table (ignored by git): where in a state the slow ones
    # fell, which the percentiles cannot say.
    raw = options.output.with_suffix(".json")
    states = {result.state: [asdict(sample) for sample in result.samples] for result in results}
    raw.write_text(json.dumps({"context": context, "settings": asdict(settings), "states": states}))
    say(f"wrote {options.output} (every request: {raw})")
    return text, problems_in(results, options.requests)


def serve_settings(cache_settings: dict[str, str]) -> str:
    every = {**_projects.SERVE_SETTINGS, **_projects.CACHE_SETTINGS, **cache_settings}
    return " ".join(f"{name}={value}" for name, value in every.items())


def _ms(value: float) -> str:
    return f"{value:.1f}"


def _seconds(value: float) -> str:
    return f"{value:g} s"


def markdown(
    results: Sequence[StateResult], settings: ClientSettings, context: dict[str, str]
) -> str:
    timeout_ms = settings.socket_timeout * 1000
    lines = [
        "# What a Redis outage costs GET /orders/{id}",
        "",
        'Written by `python -m bench.redis_outage` (see bench/README.md, "Redis outage").',
        "",
        "| | |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in context.items()),
        "| Redis client | read from the rendered project: connect timeout"
        f" {_seconds(settings.connect_timeout)},"
        f" socket timeout {_seconds(settings.socket_timeout)},"
        f" {settings.retries} retries; the breaker opens after {settings.breaker_failures}"
        f" consecutive failures and lets one probe through {_seconds(settings.breaker_reset)}"
        " later |",
        "",
        f"| Redis | REDIS_URL points at | requests | statuses | p50 ms | p99 ms | max ms"
        f" | ≥ {timeout_ms:g} ms | cache hit / miss | breaker opened | seconds |",
        "|---|---|--:|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for result in results:
        statuses = ", ".join(
            f"{status} x{count}" for status, count in sorted(result.statuses.items())
        )
        lines.append(
            f"| {result.state} | {STATE_TARGETS[result.state]} | {len(result.samples)}"
            f" | {statuses} | {_ms(result.percentile(0.5))} | {_ms(result.percentile(0.99))}"
            f" | {_ms(result.percentile(1.0))} | {result.as_slow_as(timeout_ms)}"
            f" | {result.cache_count('hit')} / {result.cache_count('miss')}"
            f" | {result.breaker_opened} | {result.seconds:.2f} |"
        )
    lines += [
        "",
        "- **ms**: wall time of each request at the client, nearest-rank percentiles.",
        f"- **≥ {timeout_ms:g} ms**: requests at least as slow as one Redis socket timeout: the"
        " ones that waited on a Redis that does not answer.",
        "- **cache hit / miss**: what the service's Server-Timing header said; with the breaker"
        " open the cache is skipped and the request counts as a miss.",
        f"- **breaker opened**: `{BREAKER_OPENED}` lines in the service's log (the first opening,"
        " then each failed probe).",
        "- **seconds**: how long the state's requests took; the breaker probes Redis once per"
        f" {_seconds(settings.breaker_reset)} while open, so a shorter state shows only its"
        " opening.",
        "",
    ]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="python -m bench.redis_outage",
        description="Measure GET /orders/{id} of a project rendered with -d cache=redis while its"
        " Redis is up, refuses connections, and hangs; write bench/results/REDIS_OUTAGE.md.",
    )
    parse.add_argument(
        "--requests",
        type=positive_int,
        help=f"sequential requests per Redis state, default {DEFAULTS['requests']}",
    )
    parse.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parse.add_argument(
        "--smoke",
        action="store_true",
        help=f"every step, tiny ({SMOKE['requests']} requests, {SMOKE['orders']} orders x"
        f" {SMOKE['items_per_order']} items); writes bench/results/REDIS_OUTAGE_SMOKE.md",
    )
    return parse


def options_from(argv: Sequence[str]) -> Options:
    args = parser().parse_args(argv)
    base = SMOKE if args.smoke else DEFAULTS
    name = "REDIS_OUTAGE_SMOKE.md" if args.smoke else "REDIS_OUTAGE.md"
    return Options(
        requests=base["requests"] if args.requests is None else args.requests,
        orders=base["orders"],
        items_per_order=base["items_per_order"],
        keep=args.keep,
        output=RESULTS / name,
        command=shlex.join(["uv", "run", "python", "-m", "bench.redis_outage", *argv]),
        cache_settings=dict(_projects.SMOKE_CACHE_SETTINGS) if args.smoke else {},
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = options_from(sys.argv[1:] if argv is None else argv)
    try:
        text, problems = run(options)
    except BenchError as error:
        print(f"bench.redis_outage: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(text)
    for problem in problems:
        print(f"bench.redis_outage: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
