"""`python -m bench.layers`: what each layer of the template costs one Redis cache hit, in CPU µs.

Renders the `cache-hit` project (`--defaults -d cache=redis -d queue=none`, `--vcs-ref HEAD`),
seeds a throwaway PostgreSQL, starts a throwaway Redis, and runs bench/_layers_driver.py with the
project's own interpreter and serving environment (as shipped: access log on, metrics in
multiprocess mode, tracing installed without an endpoint). That driver runs the app in one process
without an HTTP server and measures, by subtraction in alternating rounds, what each layer costs,
and times routing, dependency resolution and the response alone. Then bench/_layers_served.py
measures the same layers where they cost more, in the served process: one `uv run serve` per
variant, wrk on each in turn. This module turns both into bench/results/LAYERS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

from bench import _cache, _layers_served, _projects
from bench._args import positive_int
from bench._errors import BenchError
from bench._procs import free_port
from bench._report import spread
from bench._run import RESULTS, cpu_model, prepare_project, say, template_version, uv_binary

DRIVER = Path(__file__).with_name("_layers_driver.py")
# Full runs: enough requests per variant that one round's CPU per request is steady to a few µs.
FULL = {
    "requests": 6400,
    "rounds": 7,
    "orders": 200,
    "items_per_order": 200,
    "calls": 20000,
    # The served measurement (bench/_layers_served.py): rounds of wrk, seconds per server.
    "served_rounds": 5,
    "served_seconds": 5,
}
SMOKE = {
    "requests": 320,
    "rounds": 1,
    "orders": 10,
    "items_per_order": 20,
    "calls": 200,
    "served_rounds": 1,
    "served_seconds": 1,
}
# What wrk keeps in flight in the main benchmark.
CONCURRENCY = 32
DRIVER_TIMEOUT_SECONDS = 900

# Layer rows: label, then how its µs come out of one round (baseline and variants' CPU µs/req).
Round = dict[str, float]
LAYERS: list[tuple[str, Callable[[Round], float]]] = [
    (
        "RequestIdMiddleware (id from header or new, ContextVar, header)",
        lambda r: _cut(r, "request id middleware"),
    ),
    (
        "TimingMiddleware itself (RequestStats, ContextVar, Server-Timing header, send wrapper)",
        lambda r: (
            _cut(r, "timing middleware, all of it")
            - _cut(r, "access log line")
            - _cut(r, "metrics recording")
            - _cut(r, "tracing hook")
        ),
    ),
    (
        "access log line (app.access_log: JSON, written and flushed to stdout)",
        lambda r: _cut(r, "access log line"),
    ),
    ("metrics recording (Prometheus, multiprocess files)", lambda r: _cut(r, "metrics recording")),
    ("tracing hook (installed, no endpoint)", lambda r: _cut(r, "tracing hook")),
    ("AdmissionMiddleware", lambda r: _cut(r, "admission middleware")),
    ("CrashMiddleware", lambda r: _cut(r, "crash middleware")),
    ("BodyLimitMiddleware", lambda r: _cut(r, "body limit middleware")),
    ("circuit breaker", lambda r: _cut(r, "circuit breaker")),
    (
        "cache-aside and single flight (hit path)",
        lambda r: _cut(r, "cache-aside and single flight"),
    ),
]
# Made in the plain app too: the Redis round trip (client, parser, the loop's socket work).
REDIS_GET = "Redis GET (redis-py, hiredis, socket I/O)"
# FastAPI's part, in the plain app too: the whole of it removed (the router replaced by a bare
# ASGI endpoint making the route's cache call), then split with the two steps timed alone.
FRAMEWORK = "FastAPI request handling"
STEPS = [
    (
        "dependency resolution (order_id path validation, Request)",
        "dependency resolution",
    ),
    ("response (JSONBytesResponse built and sent)", "response"),
]


def _cut(round_: Round, variant: str) -> float:
    """What removing one layer saved in a round: baseline minus the variant, CPU µs/request."""
    return round_["baseline"] - round_[variant]


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="python -m bench.layers",
        description="CPU µs per layer of one Redis cache hit in the cache-hit project;"
        " writes bench/results/LAYERS.md.",
    )
    parse.add_argument(
        "--requests", type=positive_int, help=f"per variant per round, default {FULL['requests']}"
    )
    parse.add_argument("--rounds", type=positive_int, help=f"default {FULL['rounds']}")
    parse.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parse.add_argument(
        "--smoke",
        action="store_true",
        help="every step, tiny (seconds); writes bench/results/LAYERS_SMOKE.md",
    )
    parse.add_argument("--output", type=Path, metavar="FILE")
    return parse


def run(args: argparse.Namespace, command: str) -> str:
    sizes = dict(SMOKE if args.smoke else FULL)
    sizes["requests"] = args.requests or sizes["requests"]
    sizes["rounds"] = args.rounds or sizes["rounds"]
    output: Path = args.output or RESULTS / ("LAYERS_SMOKE.md" if args.smoke else "LAYERS.md")
    uv = uv_binary()
    load_average = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="fastapi-perf-layers-"))
    try:
        project, given = prepare_project(uv, workdir, "cache-hit")
        with ExitStack() as stack:
            say("starting PostgreSQL and Redis")
            url = _projects.start_database(stack)
            orders, items = sizes["orders"], sizes["items_per_order"]
            say(f"migrating and seeding: {orders} orders x {items} items")
            _projects.migrate_and_seed(uv, project, url, orders=orders, items_per_order=items)
            cache = _cache.start_redis(stack)
            env = driver_env(url, cache.url, workdir, smoke=args.smoke)
            say(
                f"measuring: {sizes['rounds']} rounds of {sizes['requests']} requests per variant,"
                f" {CONCURRENCY} in flight"
            )
            data = drive(uv, project, env, sizes, workdir)
            say("measuring in the served process: one server per variant")
            data["served"] = _layers_served.measure(
                stack,
                uv,
                project,
                env,
                cache,
                workdir,
                orders=orders,
                rounds=sizes["served_rounds"],
                duration=sizes["served_seconds"],
            )
        python = _projects.python_version(_projects.interpreter(project))
    finally:
        if args.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    text = markdown(data, sizes, command=command, given=given, python=python, load=load_average)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    output.with_suffix(".json").write_text(json.dumps(data))
    say(f"wrote {output}")
    return text


def driver_env(database_url: str, redis_url: str, workdir: Path, *, smoke: bool) -> dict[str, str]:
    """The project's serving environment, as the main benchmark serves it (logging as shipped)."""
    extra = _projects.SMOKE_CACHE_SETTINGS if smoke else {}
    env = _projects.serve_env(free_port(), database_url, redis_url, extra)
    # As shipped even when the caller's environment sets them: access log on, log level info.
    for name in ("ACCESS_LOG", "LOG_LEVEL"):
        env.pop(name, None)
    # As under `serve`: metric values in per-process files (prometheus_client's multiprocess mode).
    metrics = workdir / "metrics"
    metrics.mkdir()
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    return env


def drive(
    uv: str, project: Path, env: dict[str, str], sizes: dict[str, int], workdir: Path
) -> dict[str, Any]:
    result = workdir / "layers.json"
    command = [uv, "run", "--quiet", "python", str(DRIVER)]
    command += ["--requests", str(sizes["requests"]), "--rounds", str(sizes["rounds"])]
    command += ["--concurrency", str(CONCURRENCY), "--orders", str(sizes["orders"])]
    command += ["--calls", str(sizes["calls"]), "--output", str(result)]
    # stdout is the access log (one JSON line per request), as a container's log would take it.
    with (workdir / "access.log").open("wb") as log, (workdir / "driver.err").open("wb") as err:
        try:
            status = subprocess.run(
                command,
                cwd=project,
                env=env,
                stdout=log,
                stderr=err,
                timeout=DRIVER_TIMEOUT_SECONDS,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired as error:
            raise BenchError(
                f"the layers driver took more than {DRIVER_TIMEOUT_SECONDS} s"
            ) from error
    if status != 0:
        tail = (workdir / "driver.err").read_text(errors="replace")[-4000:]
        raise BenchError(f"the layers driver failed ({status}):\n{tail}")
    data: dict[str, Any] = json.loads(result.read_text())
    return data


def markdown(
    data: dict[str, Any],
    sizes: dict[str, int],
    *,
    command: str,
    given: str,
    python: str,
    load: float,
) -> str:
    names = list(data["rounds"])
    rounds: list[Round] = [
        {name: data["rounds"][name][i]["cpu_us"] for name in names} for i in range(sizes["rounds"])
    ]
    baseline = [r["baseline"] for r in rounds]
    plain = [r["cpu_us"] for r in data["plain"]["rounds"]]
    plain_dependencies = data["plain"]["dependency_resolution_us"]
    base = median(baseline)
    steps = data["steps_us"]
    layer_rows = []
    layers_total = [0.0] * len(rounds)
    for label, cost in LAYERS:
        values = [cost(r) for r in rounds]
        layers_total = [t + v for t, v in zip(layers_total, values, strict=True)]
        layer_rows.append(f"| {label} | {spread(values)} | {median(values) / base:.0%} |")
    framework = [_cut(r, FRAMEWORK) for r in rounds]
    redis_get = [_cut(r, REDIS_GET) for r in rounds]
    timed_alone = sum(steps[key] for _, key in STEPS)
    step_rows = [
        f"| Redis GET: redis-py + hiredis + the loop's socket work (the GET answered from a dict"
        f" instead) | {spread(redis_get)} | {median(redis_get) / base:.0%} |",
        f"| FastAPI, all of it (routing, request handling, dependencies, response) |"
        f" {spread(framework)} | {median(framework) / base:.0%} |",
        *(
            f"| of which {label}, timed alone | {steps[key]:.1f} | - | {steps[key] / base:.0%} |"
            for label, key in STEPS
        ),
        f"| of which routing and the rest (all of it minus the two above) |"
        f" {spread([f - timed_alone for f in framework])} |"
        f" {(median(framework) - timed_alone) / base:.0%} |",
        f"| for comparison: the plain app's dependency resolution (`order_id: int`, Request),"
        f" timed alone | {plain_dependencies:.1f} | - | - |",
    ]
    gap = [b - p for b, p in zip(baseline, plain, strict=True)]
    walls = [data["rounds"]["baseline"][i]["wall_us"] for i in range(sizes["rounds"])]
    busy = median(baseline) / median(walls)
    lines = [
        "# What each layer costs one cache hit",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M UTC} on {len(os.sched_getaffinity(0))} CPUs"
        f" ({cpu_model()}), Python {python}, template {template_version()}, by:",
        "",
        f"    {command}",
        "",
        f"The project: `fastapi-perf-template new --defaults {given}` (gunicorn, orjson,"
        " sqlalchemy-asyncpg, Prometheus metrics, OpenTelemetry installed), GET /orders/{id} of an"
        f" order with {sizes['items_per_order']} items, every request a Redis hit. Served as"
        " shipped: access log on (JSON to stdout, here a file), log level info, metrics in"
        " multiprocess mode, no OTLP endpoint (tracing records nothing).",
        "",
        "## Per request, in one process without a server",
        "",
        f"- The project's app, all layers: **{base:.1f} µs** of CPU per hit (median of"
        f" {sizes['rounds']} rounds, {min(baseline):.1f} to {max(baseline):.1f}).",
        f"- bench/plain_fastapi_hit_app.py (FastAPI, one route, the same Redis GET) in the same"
        f" process and loop: **{median(plain):.1f} µs** ({min(plain):.1f} to {max(plain):.1f}).",
        f"- The difference, {median(gap):.1f} µs per hit ({median(gap) / base:.0%} of the"
        " project's), is what the template adds: its own layers, which removed one at a time"
        f" below add up to {median(layers_total):.1f} µs, and what its route asks more of"
        " FastAPI than the plain one (a validated path parameter, more routes to try before it).",
        "",
        "Neither includes the HTTP server (gunicorn's uvicorn worker, httptools, the socket"
        " writes): that is the rest of a row's `app CPU ms/req` in results/RESULTS.md.",
        "",
        "## The template's layers (removed one at a time)",
        "",
        "| layer | µs per hit (median) | rounds, min to max | share of the app's CPU |",
        "|---|---|---|---|",
        *layer_rows,
        "",
        "## What the plain app does too: the Redis GET and FastAPI",
        "",
        "| step | µs per hit (median) | rounds, min to max | share of the app's CPU |",
        "|---|---|---|---|",
        *step_rows,
        "",
        *_layers_served.section(data["served"]),
        "## Method (in process)",
        "",
        "bench/_layers_driver.py runs the project's ASGI app in one process (create_app, its"
        " lifespan through ASGI lifespan messages, uvloop, logging configured as `serve` does) and"
        " drives it with no HTTP server: each request is a scope as uvicorn builds it, a receive"
        " that returns the empty body, a send that keeps the status and Server-Timing. It warms"
        " the cache (every order fetched once), checks that every order is then a hit, and runs"
        f" {sizes['rounds']} rounds. In each round every variant gets {sizes['requests']} requests,"
        f" {CONCURRENCY} in flight (as wrk's connections), the order of the variants rotating; a"
        " warm-up load precedes each round. CPU is the process's own clock"
        " (`time.thread_time` of the thread running the loop), so Redis' CPU, background"
        " threads (the metrics probe) and idle waits are not in it; that thread was busy"
        f" {busy:.0%} of the wall time. Every answer must be a 200.",
        "",
        "A variant replaces one layer with a pass-through (the middleware's `__call__` awaiting"
        " the next app; the access log, metrics observer or tracer off in the built"
        " TimingMiddleware; the breaker always allowing; `get_or_load` reduced to the backend's"
        " GET; the Redis GET answered from a dict of the same bytes), and its cost is `baseline -"
        " variant` of the same round; the table gives the median and the range over the rounds."
        " TimingMiddleware's own row is the whole middleware removed minus its access log,"
        " metrics and tracing rows. FastAPI's part is removed by putting, in place of the router"
        " Starlette's ExceptionMiddleware calls, a bare ASGI endpoint that makes the route's own"
        " cache call and sends the bytes; dependency resolution"
        " (`fastapi.dependencies.utils.solve_dependencies` for the route) and the response"
        f" (`JSONBytesResponse(document)` sent to a no-op) are timed alone, {sizes['calls']} calls"
        " each, and routing is what remains.",
        "",
        "Noise: the spread of each row over the rounds is in the table. On two shared cores a"
        " round's baseline moves by up to 10% (30 to 40 µs), and each row is the difference of two"
        " such numbers: a row whose range includes 0 is not distinguishable from free, and only"
        " rows well above their spread are measured costs. Removing"
        " a layer also removes its share of the loop's and the allocator's work, and layers"
        " interact (a cheaper request leaves more room for others in the same batch), so the rows"
        " do not add up exactly to the total gap.",
        "",
        f"Load average when the run started: {load:.2f}.",
        "",
        "## Reproduce",
        "",
        "    uv run python -m bench.layers",
        "",
        "(needs what bench/README.md lists, minus nginx; about ten minutes on two cores;"
        " `--smoke` runs every step in seconds and writes results/LAYERS_SMOKE.md).",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(arguments)
    command = shlex.join(["uv", "run", "python", "-m", "bench.layers", *arguments])
    try:
        print(run(args, command))
    except BenchError as error:
        print(f"bench.layers: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
