"""`python -m bench.admission`: what admission control does for a worker offered 3x its capacity.

The default project (on the database path, like the main benchmark's `default` row) is served
twice side by side, one worker each: as shipped (SERVER__MAX_IN_FLIGHT=64) and with admission
control off (a limit no load reaches). Each is loaded in turn, at capacity (64 connections; one
worker already saturates its core at about 16) and at three times that (192), by closed-loop
clients that wait out a 503's Retry-After as a polite client does. Latency is read from each
server's own access log (duration_ms: from the outermost middleware to the end of the response),
so the load generator's own CPU, which shares the machine, does not inflate it. The table gives
the latency of the requests that were admitted (200s), how many were refused at once or gave up
waiting for a database connection (both 503 with Retry-After), and what a refusal cost inside
the app.
Writes bench/results/ADMISSION.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import _projects
from bench._errors import BenchError
from bench._procs import free_port
from bench._run import RESULTS, cpu_model, prepare_project, say, template_version, uv_binary
from bench._servers import Server, start
from tests.loadgen import Load

DEFAULTS = {"orders": 1000, "items_per_order": 200, "seconds": 10, "rounds": 2}
SMOKE = {"orders": 20, "items_per_order": 5, "seconds": 1, "rounds": 1}
# The shipped SERVER__MAX_IN_FLIGHT: the configured capacity of one worker.
CAPACITY = 64
CONNECTIONS = (CAPACITY, 3 * CAPACITY)
WARMUP_SECONDS = 2
# The shipped limit (nothing set), and one no load here reaches.
SETTINGS = {"as shipped": {}, "admission off": {"SERVER__MAX_IN_FLIGHT": "1000000"}}
# A 503 that took this long waited for a database connection (DB__POOL_TIMEOUT, 1 s) and gave
# up; admission control refuses in microseconds.
POOL_WAIT_SECONDS = 0.5
# The access log at info, stated here rather than left to SERVE_SETTINGS (which keeps logging as
# shipped today): its lines are how a refusal's cost inside the app is read, so no change to the
# main benchmark's settings may turn them off here.
LOGGED = {"ACCESS_LOG": "true", "LOG_LEVEL": "info"}


@dataclass(frozen=True)
class Options:
    orders: int
    items_per_order: int
    seconds: int
    rounds: int
    keep: bool
    output: Path
    command: str


@dataclass(frozen=True)
class Row:
    setting: str
    connections: int
    seconds: float
    # From the server's access log: the duration of each 200, and of each quick 503.
    admitted: list[float]
    refused: list[float]
    pool_timeouts: int
    # From the client side: what was neither 200 nor 503 (a status or a transport error).
    other: dict[str, int]

    def percentile(self, fraction: float, values: list[float] | None = None) -> float:
        ordered = sorted(self.admitted if values is None else values)
        if not ordered:
            return math.nan
        return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def access_lines(log: Path, start: int, end: int) -> list[dict[str, Any]]:
    """The access log lines written between two offsets of the log file."""
    with log.open("rb") as handle:
        handle.seek(start)
        text = handle.read(end - start).decode(errors="replace")
    lines = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("logger") == "access":
            lines.append(entry)
    return lines


def measure(setting: str, server: Server, orders: int, connections: int, seconds: float) -> Row:
    """GET /orders/{id} over `connections` polite clients; the window after the warm-up."""
    with Load(
        server.base_url,
        lambda n: f"/orders/{n * 7919 % orders + 1}",
        connections=connections,
        # Refused clients wait as told: the offered load stays 3x, not a retry storm.
        honor_retry_after=True,
    ) as running:
        # A load of fixed length (not a wait for a condition): this window is what is measured.
        time.sleep(WARMUP_SECONDS)
        first, began = server.log.stat().st_size, time.monotonic()
        time.sleep(seconds)
        last, ended = server.log.stat().st_size, time.monotonic()
    entries = access_lines(server.log, first, last)
    admitted = [entry["duration_ms"] for entry in entries if entry["status"] == 200]
    unavailable = [entry["duration_ms"] for entry in entries if entry["status"] == 503]
    refused = [value for value in unavailable if value < POOL_WAIT_SECONDS * 1000]
    other: dict[str, int] = {}
    for sample in running.between(began, ended):
        if sample.status not in (200, 503):
            key = str(sample.status or sample.error)
            other[key] = other.get(key, 0) + 1
    return Row(
        setting,
        connections,
        ended - began,
        admitted,
        refused,
        len(unavailable) - len(refused),
        other,
    )


def run(options: Options) -> str:
    load_average = os.getloadavg()[0]
    uv = uv_binary()
    workdir = Path(tempfile.mkdtemp(prefix="fastapi-perf-admission-"))
    rows: list[Row] = []
    try:
        project, flags = prepare_project(uv, workdir, "default")
        with ExitStack() as stack:
            say("starting PostgreSQL")
            database = _projects.start_database(stack)
            say(f"migrating and seeding: {options.orders} orders x {options.items_per_order}")
            _projects.migrate_and_seed(
                uv,
                project,
                database,
                orders=options.orders,
                items_per_order=options.items_per_order,
            )
            servers = {}
            for setting, extra in SETTINGS.items():
                port = free_port()
                env = {**_projects.serve_env(port, database), **LOGGED, **extra}
                server = start(
                    setting,
                    [uv, "run", "serve"],
                    cwd=project,
                    env=env,
                    port=port,
                    log=workdir / f"{setting.replace(' ', '-')}.log",
                )
                stack.callback(server.stop)
                servers[setting] = server
            for server in servers.values():
                server.wait_ready("/orders/1")
            for round_number in range(options.rounds):
                for connections in CONNECTIONS:
                    order = list(servers.items())
                    if round_number % 2:
                        order.reverse()
                    for setting, server in order:
                        say(f"round {round_number + 1}: {setting}, {connections} connections")
                        rows.append(
                            measure(setting, server, options.orders, connections, options.seconds)
                        )
    finally:
        if options.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    text = markdown(rows, options, flags, load_average)
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(text)
    say(f"wrote {options.output}")
    failed = [row for row in rows if row.other]
    if failed:
        # Overload may refuse (503) but never break: any other answer is a bug, not a figure.
        raise BenchError(
            "answers other than 200 and 503: "
            + ", ".join(f"{row.setting} at {row.connections}: {row.other}" for row in failed)
        )
    return text


def merged(rows: Sequence[Row], setting: str, connections: int) -> Row:
    """The rounds of one setting and load as one row."""
    chosen = [row for row in rows if row.setting == setting and row.connections == connections]
    other: dict[str, int] = {}
    for row in chosen:
        for key, count in row.other.items():
            other[key] = other.get(key, 0) + count
    return Row(
        setting,
        connections,
        sum(row.seconds for row in chosen),
        [value for row in chosen for value in row.admitted],
        [value for row in chosen for value in row.refused],
        sum(row.pool_timeouts for row in chosen),
        other,
    )


def markdown(rows: Sequence[Row], options: Options, flags: str, load_average: float) -> str:
    lines = [
        "# Admission control at three times a worker's capacity",
        "",
        f"`{options.command}`, {datetime.now(UTC):%Y-%m-%d %H:%M UTC}, template"
        f" {template_version()}, {len(os.sched_getaffinity(0))} CPUs ({cpu_model()}), load"
        f" average {load_average:.2f} at the start.",
        "",
        "| setting | connections | admitted/s | admitted p50 ms | admitted p99 ms | p99 vs"
        f" {CAPACITY} connections | refused at once/s | refusal p50 / p99 ms |"
        " gave up waiting for a DB connection | other |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for setting in SETTINGS:
        at_capacity = merged(rows, setting, CAPACITY).percentile(0.99)
        for connections in CONNECTIONS:
            row = merged(rows, setting, connections)
            p99 = row.percentile(0.99)
            refusal = "-"
            if row.refused:
                refusal = (
                    f"{row.percentile(0.5, row.refused):.2f}"
                    f" / {row.percentile(0.99, row.refused):.2f}"
                )
            lines.append(
                f"| {setting} | {connections} | {len(row.admitted) / row.seconds:.0f}"
                f" | {row.percentile(0.5):.1f} | {p99:.1f} | {p99 / at_capacity:.2f}x"
                f" | {len(row.refused) / row.seconds:.0f} | {refusal} | {row.pool_timeouts}"
                f" | {row.other or '-'} |"
            )
    settings = {**_projects.SERVE_SETTINGS, **LOGGED}
    lines += [
        "",
        "- Latencies are the server's own (access log duration_ms: outermost middleware to the"
        " end of the response); rates are per second of the measured windows.",
        f"- Project: `fastapi-perf-template new --defaults {flags}`, `uv run serve` with"
        f" {' '.join(f'{k}={v}' for k, v in settings.items())}; the second server also"
        " SERVER__MAX_IN_FLIGHT=1000000.",
        f"- Data: {options.orders} orders x {options.items_per_order} items; GET /orders/{{id}}"
        f" over ids 1..{options.orders}; {options.rounds} round(s) of {options.seconds} s per"
        f" row after {WARMUP_SECONDS} s of warm-up, the two servers alternating.",
        "- Load: tests/loadgen.py (httpx2, one thread, closed loop; a refused client waits out"
        " Retry-After). It shares the 2 CPUs with the app and PostgreSQL.",
        "",
    ]
    return "\n".join(lines)


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parse = argparse.ArgumentParser(prog="python -m bench.admission", description=__doc__)
    parse.add_argument("--seconds", type=positive, help=f"default {DEFAULTS['seconds']}")
    parse.add_argument("--rounds", type=positive, help=f"default {DEFAULTS['rounds']}")
    parse.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parse.add_argument("--smoke", action="store_true", help="every step, tiny")
    argv = sys.argv[1:] if argv is None else argv
    args = parse.parse_args(argv)
    base = SMOKE if args.smoke else DEFAULTS
    options = Options(
        orders=base["orders"],
        items_per_order=base["items_per_order"],
        seconds=args.seconds or base["seconds"],
        rounds=args.rounds or base["rounds"],
        keep=args.keep,
        output=RESULTS / ("ADMISSION_SMOKE.md" if args.smoke else "ADMISSION.md"),
        command=shlex.join(["uv", "run", "python", "-m", "bench.admission", *argv]),
    )
    try:
        print(run(options))
    except BenchError as error:
        print(f"bench.admission: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
