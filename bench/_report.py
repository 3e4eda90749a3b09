"""Turn the rounds into the results table: medians per variant, ratios, and the run's setup."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import median

from bench._wrk import LoadResult

NOISE_PERCENT = 10

# The same project on each server `uv run serve` can run (the server answer), per path; every
# other row of a path is set against gunicorn's, the default answer's.
SERVER_ROWS = {
    "database path": {"gunicorn": "default", "uvicorn": "uvicorn", "granian": "granian"},
    "cache hit": {"gunicorn": "cache-hit", "uvicorn": "uvicorn-hit", "granian": "granian-hit"},
}
BASE_SERVER = "gunicorn"
# One worker against two (the same project, connection budget and server), per path.
WORKER_ROWS = {
    "database path": ("default", "default-2-workers"),
    "cache hit": ("cache-hit", "cache-hit-2-workers"),
}


@dataclass(frozen=True)
class Variant:
    """One row of the table: a short name for --only, its row label, and what it runs."""

    name: str
    label: str
    description: str


@dataclass(frozen=True)
class Measurement:
    """One variant under load for one round, with the CPU each side used meanwhile."""

    variant: str
    round: int
    load: LoadResult
    app_cpu_seconds: float
    db_cpu_seconds: float
    # The cache-hit variant's Redis server (0 while it idles under the other variants' loads, and
    # in runs without that variant).
    redis_cpu_seconds: float
    # Every CPU of the machine, whoever used it: what is left after app, database and wrk is
    # other work on the machine, which took CPU from this round.
    machine_cpu_seconds: float
    # Wall time between the CPU readings around the load: a little more than wrk's own duration.
    window_seconds: float

    @property
    def other_cpu_seconds(self) -> float:
        ours = (
            self.app_cpu_seconds
            + self.db_cpu_seconds
            + self.redis_cpu_seconds
            + self.load.wrk_cpu_seconds
        )
        return max(0.0, self.machine_cpu_seconds - ours)

    def per_request_ms(self, seconds: float) -> float:
        return seconds * 1000 / self.load.requests if self.load.requests else float("nan")

    @property
    def app_ms(self) -> float:
        return self.per_request_ms(self.app_cpu_seconds)

    @property
    def db_ms(self) -> float:
        return self.per_request_ms(self.db_cpu_seconds)

    @property
    def redis_ms(self) -> float:
        return self.per_request_ms(self.redis_cpu_seconds)

    @property
    def wrk_ms(self) -> float:
        return self.per_request_ms(self.load.wrk_cpu_seconds)

    def cores(self, seconds: float) -> float:
        """CPU seconds spent per second of load: 1.0 is one core kept busy."""
        return seconds / self.load.seconds if self.load.seconds else float("nan")


@dataclass(frozen=True)
class Row:
    """Medians over the rounds of one variant."""

    variant: Variant
    queries: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    app_ms: float
    db_ms: float
    redis_ms: float
    wrk_ms: float
    app_cores: float
    db_cores: float
    redis_cores: float
    wrk_cores: float
    other_cores: float
    errors: int
    rounds_rps: list[float]

    @property
    def machine_cores(self) -> float:
        return self.app_cores + self.db_cores + self.redis_cores + self.wrk_cores + self.other_cores


def summarize(
    variants: Sequence[Variant], queries: dict[str, int], measurements: Sequence[Measurement]
) -> list[Row]:
    rows = []
    for variant in variants:
        mine = sorted((m for m in measurements if m.variant == variant.name), key=lambda m: m.round)
        if not mine:
            continue

        def mid(value: Callable[[Measurement], float], runs: list[Measurement] = mine) -> float:
            return median(value(m) for m in runs)

        rows.append(
            Row(
                variant=variant,
                queries=queries[variant.name],
                rps=mid(lambda m: m.load.rps),
                p50_ms=mid(lambda m: m.load.p50_ms),
                p95_ms=mid(lambda m: m.load.p95_ms),
                p99_ms=mid(lambda m: m.load.p99_ms),
                app_ms=mid(lambda m: m.app_ms),
                db_ms=mid(lambda m: m.db_ms),
                redis_ms=mid(lambda m: m.redis_ms),
                wrk_ms=mid(lambda m: m.wrk_ms),
                app_cores=mid(lambda m: m.cores(m.app_cpu_seconds)),
                db_cores=mid(lambda m: m.cores(m.db_cpu_seconds)),
                redis_cores=mid(lambda m: m.cores(m.redis_cpu_seconds)),
                wrk_cores=mid(lambda m: m.cores(m.load.wrk_cpu_seconds)),
                other_cores=mid(lambda m: m.cores(m.other_cpu_seconds)),
                errors=sum(m.load.error_count for m in mine),
                rounds_rps=[m.load.rps for m in mine],
            )
        )
    return rows


@dataclass(frozen=True)
class Setup:
    """Everything about the run the reader needs to reproduce or discount it."""

    date: str
    command: str
    cpus: int
    cpu_model: str
    wrk: str
    rounds: int
    duration: int
    warmup: int
    connections: int
    orders: int
    items_per_order: int
    python: str
    postgres: str
    # The version of the cache-hit variant's Redis; None when the run had no such variant.
    redis: str | None
    template: str
    load_average: float
    serve_settings: str
    cache_settings: str
    # WEB_CONCURRENCY of the rows with more than one worker.
    workers: int


def spread(values: Sequence[float]) -> str:
    """Two markdown cells: the median of the rounds, and their range."""
    return f"{median(values):.1f} | {min(values):.1f} to {max(values):.1f}"


def _ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}" if base else "-"


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return out


def _framework_share(by_name: dict[str, Row]) -> list[str]:
    """Plain FastAPI's database read against the limit, and the template's against it."""
    if "plain-fastapi-db" not in by_name:
        return []
    plain = by_name["plain-fastapi-db"]
    parts = []
    if "limit" in by_name:
        limit = by_name["limit"]
        parts.append(
            f"Plain FastAPI over asyncpg (the `plain-fastapi-db` row: the limit app's pool and"
            f" query behind one FastAPI route) serves {plain.rps:,.0f} RPS,"
            f" {_ratio(plain.rps, limit.rps)} of the limit's {limit.rps:,.0f}, at"
            f" {_ratio(plain.app_ms, limit.app_ms)}x its app CPU per request: the rest of the"
            " limit's throughput is what the framework alone takes from a database read."
        )
    # The template's row with the same driver: there too PostgreSQL builds the document in one
    # query and the bytes pass through, so the gap is the template's own layers.
    if "asyncpg" in by_name:
        template = by_name["asyncpg"]
        parts.append(
            f"The template with `db_driver=asyncpg` (the `asyncpg` row) serves"
            f" {_ratio(template.rps, plain.rps)} of plain FastAPI's RPS, at"
            f" {_ratio(template.app_ms, plain.app_ms)}x its app CPU per request: the rest goes to"
            " the template's own layers."
        )
    return [" ".join(parts), ""] if parts else []


def _hit_ratio(by_name: dict[str, Row]) -> list[str]:
    """The template's cache hit against the plain FastAPI one, when the run had both."""
    if "cache-hit" not in by_name or "plain-fastapi-hit" not in by_name:
        return []
    # The default server's row (gunicorn, one worker): what a user gets.
    template, plain = by_name["cache-hit"], by_name["plain-fastapi-hit"]
    return [
        f"The template's cache hit (gunicorn, one worker: the `cache-hit` row) serves"
        f" {template.rps / plain.rps:.2f}x the plain FastAPI hit's"
        f" RPS, at {template.app_ms / plain.app_ms:.2f}x its app CPU per request: the rest of a"
        " hit's throughput goes to the template's own layers (python -m bench.layers splits"
        " them).",
        "",
    ]


def _servers(by_name: dict[str, Row]) -> list[str]:
    """Each server's row against gunicorn's of the same path and run, when both ran."""
    lines = []
    for path, names in SERVER_ROWS.items():
        base = by_name.get(names[BASE_SERVER])
        others = [(server, by_name[name]) for server, name in names.items() if name in by_name]
        if base is None or len(others) < 2:
            continue
        lines += [
            [
                path,
                server,
                f"{row.rps:,.0f}",
                _ratio(row.rps, base.rps),
                f"{row.app_ms:.2f}",
                _ratio(row.app_ms, base.app_ms),
                _ms(row.p99_ms),
            ]
            for server, row in others
        ]
    if not lines:
        return []
    return [
        "## Servers",
        "",
        "The same project served by each server the template offers (the `server` answer), one"
        " worker each. RPS and app CPU per request are also given as a ratio to the gunicorn"
        " row (the default) of the same path in this run: above 1.00 in `x gunicorn RPS` is"
        " faster, above 1.00 in `x gunicorn CPU` costs more CPU per request.",
        "",
        *_table(
            [
                "path",
                "server",
                "RPS",
                "x gunicorn RPS",
                "app CPU ms/req",
                "x gunicorn CPU",
                "p99 ms",
            ],
            lines,
        ),
        "",
    ]


def _workers(by_name: dict[str, Row], cpus: int, workers: int) -> list[str]:
    """More workers against one, on the CPUs of this machine, when both rows of a path ran."""
    parts = []
    for path, (one_name, two_name) in WORKER_ROWS.items():
        if one_name not in by_name or two_name not in by_name:
            continue
        one, two = by_name[one_name], by_name[two_name]
        parts.append(
            f"{path}: {_ratio(two.rps, one.rps)}x the RPS, p99 {_ms(two.p99_ms)} ms against"
            f" {_ms(one.p99_ms)} ms"
        )
    if not parts:
        return []
    # The README's rule: with WEB_CONCURRENCY unset, `serve` starts one worker per usable CPU.
    rule = (
        "what `uv run serve` starts here with WEB_CONCURRENCY unset"
        if cpus == workers
        else f"not what `uv run serve` starts here with WEB_CONCURRENCY unset ({cpus})"
    )
    return [
        f"With {workers} workers instead of one on these {cpus} CPUs (WEB_CONCURRENCY={workers},"
        f" the same budget of 20 connections, so {workers} pools of {20 // workers}), against"
        f" the one-worker row: {'; '.join(parts)}. The template's README sizes workers at one"
        " per CPU the container"
        f" may use, so {workers} is {rule}. App, PostgreSQL, Redis and wrk share these CPUs: the"
        " extra workers compete with them for what they add.",
        "",
    ]


def markdown(rows: Sequence[Row], setup: Setup) -> str:
    by_name = {row.variant.name: row for row in rows}
    naive = by_name["naive"].rps if "naive" in by_name else None
    limit = by_name["limit"].rps if "limit" in by_name else None
    main = _table(
        [
            "variant",
            "RPS",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "queries/req",
            "app CPU ms/req",
            "db CPU ms/req",
            "Redis CPU ms/req",
            "wrk CPU ms/req",
            "x naive",
            "x limit",
            "errors",
        ],
        [
            [
                row.variant.label,
                f"{row.rps:,.0f}",
                _ms(row.p50_ms),
                _ms(row.p95_ms),
                _ms(row.p99_ms),
                str(row.queries),
                f"{row.app_ms:.2f}",
                f"{row.db_ms:.2f}",
                f"{row.redis_ms:.2f}",
                f"{row.wrk_ms:.2f}",
                _ratio(row.rps, naive),
                _ratio(row.rps, limit),
                str(row.errors),
            ]
            for row in rows
        ],
    )
    cpu = _table(
        ["variant", "app", "PostgreSQL", "Redis", "wrk", "other processes", "machine", "of CPUs"],
        [
            [
                row.variant.label,
                f"{row.app_cores:.2f}",
                f"{row.db_cores:.2f}",
                f"{row.redis_cores:.2f}",
                f"{row.wrk_cores:.2f}",
                f"{row.other_cores:.2f}",
                f"{row.machine_cores:.2f}",
                str(setup.cpus),
            ]
            for row in rows
        ],
    )
    per_round = _table(
        ["variant", *(f"round {n}" for n in range(1, setup.rounds + 1))],
        [[row.variant.label, *(f"{rps:,.0f}" for rps in row.rounds_rps)] for row in rows],
    )
    lines = [
        "# Benchmark: GET /orders/{id}",
        "",
        f"Measured {setup.date} on {setup.cpus} CPUs ({setup.cpu_model}) by:",
        "",
        f"    {setup.command}",
        "",
        *main,
        "",
        f"Medians over {setup.rounds} round(s) of {setup.duration} s per variant. App, PostgreSQL"
        " and wrk share the same CPUs, so the numbers are relative, not capacity figures:"
        f" differences under about {NOISE_PERCENT}% are noise. `x naive` and `x limit` divide a"
        " row's RPS by the naive and the limit rows'. `errors` counts socket errors and non-2xx"
        " answers over all rounds. `queries/req` is 0 where every request was a cache hit;"
        " `db CPU` is the whole PostgreSQL cluster's, `Redis CPU` the cache server's.",
        "",
        *_framework_share(by_name),
        *_hit_ratio(by_name),
        *_workers(by_name, setup.cpus, setup.workers),
        *_servers(by_name),
        "## What limited each variant",
        "",
        "CPU seconds used per second of load (1.00 = one core busy), medians over the rounds."
        " Each app is one process (the two-worker and replica rows are two): near 1.00 in the"
        " `app` column (2.00 for those), the app's own CPU is the limit, and `1000 / app CPU"
        " ms/req` is its RPS ceiling on one core. When `machine` is near the CPU"
        " count instead, the machine is full: app, PostgreSQL, Redis and wrk compete for it, and"
        " `other processes` (anything outside the benchmark) took its share from them.",
        "",
        *cpu,
        "",
        "## RPS per round",
        "",
        "The spread between rounds is the noise of this machine.",
        "",
        *per_round,
        "",
        "## Variants",
        "",
        *(f"- {row.variant.label}: {row.variant.description}" for row in rows),
        "",
        "## Setup",
        "",
        f"- Data: {setup.orders} orders x {setup.items_per_order} items, written by the default"
        " project's `app.seed`; every request asks for a random order id in"
        f" 1..{setup.orders} (same id sequence for every variant).",
        f"- Load: `{setup.wrk}` with bench/orders.lua, {setup.connections} connections. The"
        " variants alternate within each round, starting one later each round; each one was"
        f" warmed up for {setup.warmup} s before its first round.",
        "- Apps: one server process each (the two-worker rows two workers, the replica row two"
        " replicas, sharing the same 20 connections), 20 database connections each, all running"
        f" during the whole benchmark on Python {setup.python}. The projects run `uv run serve`"
        f" with {setup.serve_settings}, logging as shipped (an access log line per request, to"
        " a file); the reference apps log nothing per request. CPU is read from /proc for each"
        " app's"
        " process tree and for all processes of the PostgreSQL cluster, before and after each"
        " round, and divided by the requests wrk completed.",
        f"- PostgreSQL {setup.postgres}, throwaway cluster on loopback.",
        *(
            [
                f"- Redis {setup.redis}, throwaway server on loopback (the cache-hit rows' cache,"
                " which the plain FastAPI row reads; the cache-hit projects also get"
                f" {setup.cache_settings})."
            ]
            if setup.redis
            else []
        ),
        f"- Template: {setup.template}.",
        f"- Load average when the run started: {setup.load_average:.2f} (anything else running"
        " on the machine takes CPU from the apps and skews every row).",
        "",
    ]
    return "\n".join(lines)
