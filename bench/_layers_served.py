"""Each layer's cost to a cache hit in the served process: one server per variant, wrk on each.

In one process without a server (bench/_layers_driver.py) the request path runs hot in the CPU's
caches, and each layer looks several times cheaper than it is under load. Here the cache-hit
project is served by `uv run serve` (gunicorn, one worker, as shipped) once per variant, one layer
made a no-op in each by bench/_served_cut/sitecustomize.py with the in-process driver's own patches,
beside bench/plain_fastapi_hit_app.py. All run side by side; wrk loads one at a time, the order
rotating each round. A layer's cost per hit is what removing it saves the worker: 1e6 / RPS of the
baseline minus the same of the variant, in µs of a worker that is the bottleneck (one core).
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path
from statistics import median
from typing import Any

from bench import _cache, _projects, _reference, _wrk
from bench._cache import CacheServer
from bench._errors import BenchError
from bench._http import get
from bench._procs import free_port
from bench._report import spread
from bench._run import BENCH, reference_cache_env, rotated, say
from bench._servers import Server, start, terminate_all

HOOK = Path(__file__).with_name("_served_cut")
CONNECTIONS = 32
PLAIN = "plain FastAPI hit"
BASELINE = "baseline"
# The in-process driver's variants (its names) that a served process can run: all but the Redis
# GET answered from a dict, which needs the documents in the worker.
CUTS = [
    BASELINE,
    "request id middleware",
    "timing middleware, all of it",
    "access log line",
    "metrics recording",
    "tracing hook",
    "admission middleware",
    "crash middleware",
    "body limit middleware",
    "circuit breaker",
    "cache-aside and single flight",
    "FastAPI request handling",
]
# Rows: label, and the cuts whose savings it is (the first's minus the others').
ROWS: list[tuple[str, list[str]]] = [
    ("RequestIdMiddleware", ["request id middleware"]),
    (
        "TimingMiddleware itself (RequestStats, ContextVar, Server-Timing header, send wrapper)",
        ["timing middleware, all of it", "access log line", "metrics recording", "tracing hook"],
    ),
    ("access log line (JSON, written and flushed to stdout)", ["access log line"]),
    ("metrics recording", ["metrics recording"]),
    ("tracing hook (installed, no endpoint)", ["tracing hook"]),
    ("AdmissionMiddleware", ["admission middleware"]),
    ("CrashMiddleware", ["crash middleware"]),
    ("BodyLimitMiddleware", ["body limit middleware"]),
    ("circuit breaker", ["circuit breaker"]),
    ("cache-aside and single flight (hit path)", ["cache-aside and single flight"]),
    (
        "FastAPI (routing, dependencies, response; the plain app has it too)",
        ["FastAPI request handling"],
    ),
]


def measure(
    stack: ExitStack,
    uv: str,
    project: Path,
    env: dict[str, str],
    cache: CacheServer,
    workdir: Path,
    *,
    orders: int,
    rounds: int,
    duration: int,
) -> dict[str, Any]:
    """Start every variant and the plain app, warm them, and load each in turn: RPS per round."""
    interpreter = _projects.interpreter(project)
    say("reference venv for the plain FastAPI hit app (bench/requirements.txt)")
    python = _reference.build_venv(uv, workdir / "reference-venv", interpreter)
    servers = start_servers(stack, uv, project, env, cache, python, workdir)
    # The baseline fills the cache and shows a hit; the rest then read only what it stored (with
    # no Server-Timing to show it in some variants: Redis' counters check every round instead).
    _cache.warm(servers[0], orders)
    for server in servers[1:]:
        for order_id in range(1, orders + 1):
            status = get(f"{server.base_url}/orders/{order_id}").status
            if status != 200:
                raise BenchError(f"{server.name}: GET /orders/{order_id} answered {status}")
    for server in servers:
        applied = f"bench: layer cut applied: {server.name}"
        if server.name != PLAIN and applied not in server.log.read_text(errors="replace"):
            raise BenchError(f"{server.name}: the served process did not say {applied!r}")
    results: dict[str, list[float]] = {server.name: [] for server in servers}
    for round_ in range(rounds):
        say(f"served round {round_ + 1}/{rounds}: {len(servers)} servers, {duration} s each")
        for server in rotated(servers, round_):
            before = _cache.lookups(cache)
            result = _wrk.load(
                server.base_url,
                duration=duration,
                connections=CONNECTIONS,
                max_id=orders,
                seed=round_ + 1,
            )
            _cache.check_all_hits(server.name, before, _cache.lookups(cache), result.requests)
            if result.error_count:
                raise BenchError(f"{server.name}: {result.errors} in a served round")
            results[server.name].append(result.rps)
    return {"rounds": rounds, "duration": duration, "rps": results}


def start_servers(
    stack: ExitStack,
    uv: str,
    project: Path,
    env: dict[str, str],
    cache: CacheServer,
    python: Path,
    workdir: Path,
) -> list[Server]:
    servers: list[Server] = []
    for cut in CUTS:
        port = free_port()
        served = {
            # `serve` makes the worker's metrics directory itself, one per server.
            **{name: value for name, value in env.items() if name != "PROMETHEUS_MULTIPROC_DIR"},
            "PORT": str(port),
            "METRICS__PORT": str(free_port()),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HOOK), env.get("PYTHONPATH")])),
            "BENCH_LAYER_CUT": cut,
        }
        log = workdir / f"served-{len(servers)}.log"
        server = start(cut, [uv, "run", "serve"], cwd=project, env=served, port=port, log=log)
        servers.append(server)
        stack.callback(server.stop)
    port = free_port()
    plain_env = _projects.clean_env(reference_cache_env(uv, project, env["DATABASE_URL"], cache))
    command = _reference.uvicorn_command(python, "plain_fastapi_hit_app", port)
    plain = start(PLAIN, command, cwd=BENCH, env=plain_env, port=port, log=workdir / "plain.log")
    servers.append(plain)
    stack.callback(plain.stop)
    stack.callback(terminate_all, servers)
    for server in servers:
        # In order: the baseline's first answer stores order 1, which every variant then reads
        # (the one without FastAPI answers only cached orders).
        server.wait_ready("/orders/1")
    return servers


def _per_hit_us(rps: float) -> float:
    return 1e6 / rps


def section(data: dict[str, Any]) -> list[str]:
    """The served table and its method, as markdown lines for LAYERS.md."""
    rps: dict[str, list[float]] = data["rps"]
    base = rps[BASELINE]
    plain = rps[PLAIN]
    rounds = range(data["rounds"])

    def saved(cut: str) -> list[float]:
        return [_per_hit_us(base[i]) - _per_hit_us(rps[cut][i]) for i in rounds]

    base_us = median(_per_hit_us(value) for value in base)
    rows = []
    for label, (cut, *minus) in ROWS:
        values = saved(cut)
        for other in minus:
            values = [v - o for v, o in zip(values, saved(other), strict=True)]
        rows.append(f"| {label} | {spread(values)} | {median(values) / base_us:.0%} |")
    ratio = [b / p for b, p in zip(base, plain, strict=True)]
    wrk = _wrk.settings(CONNECTIONS).replace("<duration>", str(data["duration"]))
    return [
        "## In the served process",
        "",
        f"- The project as shipped: **{median(base):,.0f} RPS**, {base_us:.1f} µs of the worker"
        f" per hit (median of {data['rounds']} rounds of {data['duration']} s).",
        f"- bench/plain_fastapi_hit_app.py: **{median(plain):,.0f} RPS**. The project serves"
        f" **{median(ratio):.2f}x** the plain hit ({min(ratio):.2f} to {max(ratio):.2f}).",
        "",
        "| removed from the served project | µs per hit (median) | rounds, min to max"
        " | share of the worker's time |",
        "|---|---|---|---|",
        *rows,
        "",
        "Method: every variant of the table above that a server can run (all but the Redis GET"
        " from a dict) is served by its own `uv run serve` of the same project (gunicorn, one"
        " worker, access log to a file, metrics on, tracing installed without an endpoint), the"
        " layer made a no-op by bench/_served_cut/sitecustomize.py with the in-process driver's"
        " own patches; the plain app by uvicorn (uvloop, httptools, no access log), as in the main"
        f" benchmark. All are up side by side; `{wrk}` with"
        " bench/orders.lua loads one at a time, the order rotating each round, and Redis' counters"
        " check that every request was a hit. The worker is the bottleneck (one core of two, the"
        " other for wrk and Redis), so 1e6 / RPS is the worker's time per hit, and a row is what"
        " removing the layer saves of it. Differences under about 2% of the time per hit are"
        " within the rounds' noise.",
        "",
    ]
