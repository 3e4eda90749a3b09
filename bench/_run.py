"""The benchmark from start to end: database, projects, apps, checks, alternating rounds, report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from bench import _cache, _otlp_sink, _projects, _reference, _replicas, _wrk
from bench._cache import CacheServer
from bench._check import check_documents
from bench._errors import BenchError
from bench._procs import free_port, listening_pid, machine_busy_seconds, tree_cpu_seconds
from bench._report import Measurement, Setup, Variant, markdown, summarize
from bench._servers import Server, start, terminate_all
from tests.services import ServiceError, postgres

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
POOL_SIZE = 20

# Table order: the baseline, what the template generates, the ceiling. The other servers and
# the second worker sit right under the gunicorn row they are compared with.
VARIANT_NAMES = (
    "naive",
    "default",
    "uvicorn",
    "granian",
    "default-2-workers",
    "default-no-metrics",
    "default-traced",
    "default-replicas",
    "asyncpg",
    "cache-hit",
    "uvicorn-hit",
    "granian-hit",
    "cache-hit-2-workers",
    "cache-hit-no-metrics",
    "cache-hit-traced",
    "plain-fastapi-hit",
    "plain-fastapi-db",
    "limit",
)
PROJECT_ANSWERS = {
    "default": {},
    # The other servers `uv run serve` can run (the server answer; gunicorn is the default).
    "uvicorn": {"server": "uvicorn"},
    "granian": {"server": "granian"},
    # What the default's metrics cost: the same project without them (the one answer changed).
    "default-no-metrics": {"metrics": "none"},
    "asyncpg": {"db_driver": "asyncpg"},
    # The default project with the template's Redis cache-aside of the document bytes.
    "cache-hit": {"cache": "redis"},
    "uvicorn-hit": {"cache": "redis", "server": "uvicorn"},
    "granian-hit": {"cache": "redis", "server": "granian"},
    "cache-hit-no-metrics": {"cache": "redis", "metrics": "none"},
}
# What tracing costs once it exports: the same project as the variant named, served with
# OTEL_EXPORTER_OTLP_ENDPOINT set to a sink on loopback (bench._otlp_sink) and the default
# sampling (a tenth of new traces). Without an endpoint, as in every other row, nothing is traced.
TRACED_VARIANTS = {"default-traced": "default", "cache-hit-traced": "cache-hit"}
# Served as two replicas of the project named, behind the nginx.conf it ships (bench._replicas).
REPLICA_VARIANTS = {"default-replicas": "default"}
# The project named, served with WEB_CONCURRENCY=WORKERS and the same connection budget (so
# pools of 10): what the README's one-worker-per-CPU rule buys on this machine's CPUs. Their app
# CPU is the whole tree's (Server.cpu_seconds): supervisor and every worker.
WORKER_VARIANTS = {"default-2-workers": "default", "cache-hit-2-workers": "cache-hit"}
WORKERS = 2
# The project each row serves.
PROJECT_OF = {**TRACED_VARIANTS, **REPLICA_VARIANTS, **WORKER_VARIANTS}
# Served with a Redis, warmed before the checks, and measured on cache hits only.
CACHE_HIT_VARIANTS = frozenset(
    {
        "cache-hit",
        "uvicorn-hit",
        "granian-hit",
        "cache-hit-2-workers",
        "cache-hit-no-metrics",
        "cache-hit-traced",
    }
)
# Reference apps that read the entries the warm-up of the project row named stores in that
# Redis, with that project's keys (bench._cache.document_key_prefix): they load nothing
# themselves, so that row must run too.
READS_CACHE_OF = {"plain-fastapi-hit": "cache-hit"}
# Every row whose rounds must be Redis hits only, checked against Redis' own counters.
HITS_ONLY_VARIANTS = CACHE_HIT_VARIANTS | READS_CACHE_OF.keys()


@dataclass(frozen=True)
class Options:
    rounds: int
    duration: int
    warmup: int
    connections: int
    orders: int
    items_per_order: int
    keep: bool
    only: tuple[str, ...]
    output: Path
    command: str
    # Added to the cache-hit project's environment besides CACHE_SETTINGS (smoke runs only).
    cache_settings: dict[str, str]


def say(message: str) -> None:
    """Progress on stderr, so stdout carries only the results table."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def uv_binary() -> str:
    """The uv next to this interpreter (the repo's locked one), else the first on PATH.

    Not a pyenv shim by name: a shim can resolve to another interpreter inside a project whose
    .python-version differs.
    """
    beside = Path(sys.executable).with_name("uv")
    if beside.is_file():
        return str(beside)
    found = shutil.which("uv")
    if found is None:
        raise BenchError("uv is not installed")
    return found


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return "unknown CPU"


def template_version() -> str:
    """The commit rendered, marked when the working tree has uncommitted edits."""
    result = subprocess.run(
        ["git", "describe", "--always", "--tags", "--dirty= with uncommitted changes"],
        cwd=_projects.REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "unknown (not a git checkout)"


def rotated(items: Sequence[Server], offset: int) -> list[Server]:
    """The apps in order, starting `offset` later: no app always runs right after another."""
    offset %= len(items)
    return [*items[offset:], *items[:offset]]


def run(options: Options) -> str:
    """Run the whole benchmark; return the results as markdown (also written to options.output)."""
    _wrk.wrk_binary()
    uv = uv_binary()
    # Read before this run adds its own load: anything else busy on the machine skews every row.
    load_average = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="fastapi-perf-bench-"))
    try:
        projects = prepare_projects(uv, workdir, options.only)
        interpreter = _projects.interpreter(projects["default"])
        python_version = _projects.python_version(interpreter)
        say(f"reference apps' venv (Python {python_version}, bench/requirements.txt)")
        python = _reference.build_venv(uv, workdir / "reference-venv", interpreter)
        with ExitStack() as stack:
            say("starting PostgreSQL")
            url, postmaster = start_database(stack, python, len(options.only))
            say(f"migrating and seeding: {options.orders} orders x {options.items_per_order} items")
            _projects.migrate_and_seed(
                uv,
                projects["default"],
                url,
                orders=options.orders,
                items_per_order=options.items_per_order,
            )
            # Fresh statistics and no pending autovacuum: the rounds then measure requests only.
            _reference.execute_sql(python, url, "VACUUM ANALYZE")
            postgres_version = _reference.fetch_sql(python, url, "SHOW server_version")
            cache: CacheServer | None = None
            if HITS_ONLY_VARIANTS.intersection(options.only):
                say("starting Redis")
                cache = _cache.start_redis(stack)
            sink: str | None = None
            if TRACED_VARIANTS.keys() & set(options.only):
                sink = stack.enter_context(_otlp_sink.running())
                say(f"OTLP sink for the traced variants at {sink}")
            variants, servers = start_apps(
                stack, uv, python, projects, url, cache, sink, workdir, options
            )
            for server in servers:
                if server.name in CACHE_HIT_VARIANTS:
                    say(f"warming the {server.name} cache: orders 1..{options.orders}")
                    _cache.warm(server, options.orders)
            say("checking that every app serves the same documents")
            queries = check(servers, projects, options)
            measurements = measure(servers, postmaster, cache, options)
    finally:
        if options.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    setup = Setup(
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command=options.command,
        cpus=len(os.sched_getaffinity(0)),
        cpu_model=cpu_model(),
        wrk=_wrk.settings(options.connections).replace("<duration>", str(options.duration)),
        rounds=options.rounds,
        duration=options.duration,
        warmup=options.warmup,
        connections=options.connections,
        orders=options.orders,
        items_per_order=options.items_per_order,
        python=python_version,
        postgres=postgres_version,
        redis=cache.version if cache else None,
        template=template_version(),
        load_average=load_average,
        serve_settings=" ".join(f"{k}={v}" for k, v in _projects.SERVE_SETTINGS.items()),
        cache_settings=" ".join(
            f"{k}={v}" for k, v in {**_projects.CACHE_SETTINGS, **options.cache_settings}.items()
        ),
        workers=WORKERS,
    )
    text = markdown(summarize(variants, queries, measurements), setup)
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(text)
    raw = options.output.with_suffix(".json")
    rounds = [asdict(m) for m in measurements]
    raw.write_text(json.dumps({"setup": asdict(setup), "queries": queries, "rounds": rounds}))
    say(f"wrote {options.output} (raw rounds: {raw})")
    return text


def prepare_projects(uv: str, workdir: Path, only: Sequence[str]) -> dict[str, Path]:
    """Render and `uv sync` the projects in `only`, and always the default one.

    The default project is needed even when it is not measured: its migrations and seed make the
    data every variant reads.
    """
    wanted = {PROJECT_OF.get(name, READS_CACHE_OF.get(name, name)) for name in only}
    return {
        name: prepare_project(uv, workdir, name)[0]
        for name in PROJECT_ANSWERS
        if name == "default" or name in wanted
    }


def prepare_project(uv: str, workdir: Path, name: str) -> tuple[Path, str]:
    """Render one variant's project into `workdir / name` and `uv sync` it; it and its -d flags."""
    # The Copier settings of whoever runs this must not change the answers.
    settings = workdir / "copier-settings.yml"
    settings.write_text("{}\n")
    answers = _projects.answers_for(PROJECT_ANSWERS[name], _projects.template_questions())
    project = workdir / name
    given = " ".join(f"-d {key}={value}" for key, value in answers.items())
    say(f"rendering the {name} project: --defaults {given}".rstrip())
    _projects.render(uv, project, answers, {"COPIER_SETTINGS_PATH": str(settings)})
    _projects.ensure_orders_domain(project)
    say(f"uv sync in {name}")
    _projects.sync(uv, project)
    return project, given


def start_database(stack: ExitStack, python: Path, apps: int) -> tuple[str, int]:
    """A throwaway PostgreSQL, stopped with `stack`; its plain URL and its postmaster's pid."""
    # Every app keeps its pool (or its workers' or replicas' pools, together as large) open from
    # its first round to the end of the run, all of them side by side, plus the runner's own.
    needed = POOL_SIZE * apps + 10
    try:
        database = stack.enter_context(postgres(max_connections=needed))
    except ServiceError as error:
        raise BenchError(f"cannot start PostgreSQL: {error}") from error
    # A plain postgresql:// URL: the projects accept it for every PostgreSQL driver.
    url = database.url_for()
    if not url.startswith("postgresql://"):
        raise BenchError(f"expected a postgresql:// URL from tests.services, got {url!r}")
    port = urlsplit(url).port
    postmaster = listening_pid(port) if port else None
    if postmaster is None:
        raise BenchError(f"cannot find the PostgreSQL process listening on {url}")
    # A server from TEST_POSTGRES_URL has the connections it was configured with.
    max_connections = int(_reference.fetch_sql(python, url, "SHOW max_connections"))
    if max_connections < needed:
        raise BenchError(
            f"PostgreSQL allows {max_connections} connections; {apps} apps with pools of"
            f" {POOL_SIZE} need {needed}"
        )
    return url, postmaster


def start_apps(
    stack: ExitStack,
    uv: str,
    python: Path,
    projects: Mapping[str, Path],
    url: str,
    cache: CacheServer | None,
    sink: str | None,
    workdir: Path,
    options: Options,
) -> tuple[list[Variant], list[Server]]:
    """Start every app in `options.only` (stopped with `stack`) and wait until each answers."""
    variants: list[Variant] = []
    servers: list[Server] = []
    questions = _projects.template_questions()
    for name in VARIANT_NAMES:
        if name not in options.only:
            continue
        port = free_port()
        project = PROJECT_OF.get(name, name)
        if project in projects:
            redis_url = None
            if name in CACHE_HIT_VARIANTS:
                if cache is None:
                    raise BenchError(f"the {name} variant needs a Redis; none was started")
                redis_url = cache.url
            command = [uv, "run", "serve"]
            env = _projects.serve_env(port, url, redis_url, options.cache_settings)
            if name in TRACED_VARIANTS:
                if sink is None:
                    raise BenchError(f"the {name} variant needs an OTLP sink; none was started")
                env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink
            if name in WORKER_VARIANTS:
                env["WEB_CONCURRENCY"] = str(WORKERS)
            cwd = projects[project]
            given = _projects.answers_for(PROJECT_ANSWERS[project], questions)
            variants.append(project_variant(name, _projects.stored_answers(cwd), given))
        else:
            command = _reference.uvicorn_command(python, f"{name.replace('-', '_')}_app", port)
            env = _projects.clean_env({"DATABASE_URL": url})
            if name in READS_CACHE_OF:
                env.update(reference_cache_env(uv, projects[READS_CACHE_OF[name]], url, cache))
            cwd = BENCH
            variants.append(REFERENCE_VARIANTS[name])
        say(f"starting {name} on port {port}")
        server: Server
        if name in REPLICA_VARIANTS:
            env_for = {
                replica_port: _projects.serve_env(replica_port, url, None, options.cache_settings)
                for replica_port in _replicas.replica_ports()
            }
            server = _replicas.start_balanced(
                stack, name, command, project=cwd, env_for=env_for, workdir=workdir
            )
        else:
            server = start(name, command, cwd=cwd, env=env, port=port, log=workdir / f"{name}.log")
        stack.callback(server.stop)
        servers.append(server)
    # Run first on the way out (the stack unwinds in reverse): every app gets its SIGTERM at once,
    # and each stop() above only waits for its own.
    stack.callback(terminate_all, servers)
    for server in servers:
        server.wait_ready("/orders/1")
    return variants, servers


def reference_cache_env(
    uv: str, project: Path, url: str, cache: CacheServer | None
) -> dict[str, str]:
    """REDIS_URL and ORDER_KEY_PREFIX of a reference app reading `project`'s cache entries."""
    if cache is None:
        raise BenchError("a reference app reading the cache needs a Redis; none was started")
    # The project's namespace is a setting: ask its code with the environment it is served with.
    env = _projects.serve_env(free_port(), url, cache.url)
    prefix = _cache.document_key_prefix(uv, project, env)
    say(f"the {project.name} project's cache keys: {prefix}<order id>")
    return {"REDIS_URL": cache.url, "ORDER_KEY_PREFIX": prefix}


def check(
    servers: Sequence[Server], projects: Mapping[str, Path], options: Options
) -> dict[str, int]:
    """Same documents everywhere, and the queries per request each project promises.

    One on the database path; none where the cache was warmed (every document from Redis).
    """
    ids = sorted({1, 2, max(1, options.orders // 2), options.orders})
    queries = check_documents(
        servers, ids=ids, missing_id=options.orders + 1, items_per_order=options.items_per_order
    )
    for name in queries:
        if PROJECT_OF.get(name, name) not in projects:
            continue  # a reference app
        if name in CACHE_HIT_VARIANTS and queries[name] != 0:
            raise BenchError(
                f"the {name} project ran {queries[name]} queries for GET /orders/{{id}} on a"
                " warmed cache; every request should be a cache hit"
            )
        if name not in CACHE_HIT_VARIANTS and queries[name] != 1:
            raise BenchError(
                f"the {name} project reports {queries[name]} queries for GET /orders/{{id}};"
                " the template promises 1"
            )
    return queries


def measure(
    servers: Sequence[Server], postmaster: int, cache: CacheServer | None, options: Options
) -> list[Measurement]:
    """Warm every app up, then the rounds: each app loaded in turn, CPU read around each load.

    Around a cache-hit variant's loads, Redis' lookup counters too: each round must be all hits.
    """

    def redis_cpu_seconds() -> float:
        return tree_cpu_seconds(cache.pid) if cache else 0.0

    for server in servers:
        say(f"warming up {server.name} ({options.warmup} s)")
        _wrk.load(
            server.base_url,
            duration=options.warmup,
            connections=options.connections,
            max_id=options.orders,
            seed=0,
        )
    measurements = []
    for round_number in range(1, options.rounds + 1):
        for server in rotated(servers, round_number - 1):
            hits_only = cache is not None and server.name in HITS_ONLY_VARIANTS
            lookups_before = _cache.lookups(cache) if cache and hits_only else None
            app_before = server.cpu_seconds()
            db_before = tree_cpu_seconds(postmaster)
            redis_before = redis_cpu_seconds()
            machine_before = machine_busy_seconds()
            started = time.monotonic()
            result = _wrk.load(
                server.base_url,
                duration=options.duration,
                connections=options.connections,
                max_id=options.orders,
                # The same ids for every app within a round, other ids the next round.
                seed=round_number,
            )
            measurement = Measurement(
                variant=server.name,
                round=round_number,
                load=result,
                app_cpu_seconds=server.cpu_seconds() - app_before,
                db_cpu_seconds=tree_cpu_seconds(postmaster) - db_before,
                redis_cpu_seconds=redis_cpu_seconds() - redis_before,
                machine_cpu_seconds=machine_busy_seconds() - machine_before,
                window_seconds=time.monotonic() - started,
            )
            if cache and lookups_before is not None:
                _cache.check_all_hits(
                    server.name, lookups_before, _cache.lookups(cache), result.requests
                )
            measurements.append(measurement)
            say(
                f"round {round_number}/{options.rounds} {server.name}: {result.rps:,.0f} RPS,"
                f" p99 {result.p99_ms:.1f} ms, app {measurement.app_ms:.2f} ms/req,"
                f" db {measurement.db_ms:.2f} ms/req, errors {result.error_count}"
            )
    return measurements


REFERENCE_VARIANTS = {
    "naive": Variant(
        "naive",
        "naive: N+1, model_validate, std json",
        "bench/naive_app.py: FastAPI + SQLAlchemy async ORM; the order, its customer, the item"
        " ids, then one query per item; pydantic model_validate(from_attributes=True), then"
        " JSONResponse (std json).",
    ),
    "plain-fastapi-hit": Variant(
        "plain-fastapi-hit",
        "plain FastAPI: Redis GET, cached bytes out",
        "bench/plain_fastapi_hit_app.py: one FastAPI route, no middleware; a redis.asyncio"
        " client (hiredis) owned by the lifespan GETs the key the cache-hit project uses and the"
        " stored bytes go out as they are. It reads the entries that project's warm-up stored and"
        " loads nothing itself: every measured request a Redis hit, checked like the cache-hit"
        " row's. The ceiling of a cache hit with the framework.",
    ),
    "plain-fastapi-db": Variant(
        "plain-fastapi-db",
        "plain FastAPI + asyncpg: PostgreSQL-built JSON",
        "bench/plain_fastapi_db_app.py: one FastAPI route, no middleware; the limit app's"
        " asyncpg pool (owned by the lifespan) and its one query, imported from"
        " bench/limit_app.py, the document's bytes out as they are. The ceiling of a database"
        " read with the framework: its RPS over the limit row's is what FastAPI alone leaves.",
    ),
    "limit": Variant(
        "limit",
        "limit: bare ASGI + asyncpg, PostgreSQL-built JSON",
        "bench/limit_app.py: no framework; one query in which PostgreSQL builds the document,"
        " passed through as bytes.",
    ),
}


PROJECT_LABELS = {
    "default": "template defaults",
    "uvicorn": "template defaults, server uvicorn",
    "granian": "template defaults, server granian",
    "default-2-workers": "template defaults, two workers",
    "default-no-metrics": "template defaults, metrics none",
    "asyncpg": "template",
    "cache-hit": "template defaults, Redis cache hit",
    "uvicorn-hit": "template defaults, Redis cache hit, server uvicorn",
    "granian-hit": "template defaults, Redis cache hit, server granian",
    "cache-hit-2-workers": "template defaults, Redis cache hit, two workers",
    "cache-hit-no-metrics": "template defaults, Redis cache hit, metrics none",
    "default-traced": "template defaults, traces exported",
    "default-replicas": "template defaults, two replicas behind nginx",
    "cache-hit-traced": "template defaults, Redis cache hit, traces exported",
}


def project_variant(name: str, answers: Mapping[str, object], given: Mapping[str, str]) -> Variant:
    """A generated project's row, labelled with the answers that shape its hot path.

    `answers` are the ones Copier stored, `given` the -d answers it was rendered with.
    """
    shape = [str(answers[key]) for key in ("db_driver", "json_encoder", "server") if key in answers]
    flags = "".join(f" -d {key}={value}" for key, value in given.items())
    description = (
        f"a project rendered from this checkout with `fastapi-perf-template new --defaults{flags}`,"
        " served by `uv run serve` with one worker."
    )
    if name in TRACED_VARIANTS:
        description += (
            " Traces are exported: OTEL_EXPORTER_OTLP_ENDPOINT names a sink on loopback that"
            " answers every export with 200, and the sampler is the default (a tenth of new"
            " traces kept)."
        )
    if name in REPLICA_VARIANTS:
        description = description.replace(
            "served by `uv run serve` with one worker.",
            "served as two replicas, each `uv run serve` with one worker and DB__REPLICAS=2 (pools"
            " of 10, the one-replica row's 20 shared), behind the project's own"
            " deploy/nginx/nginx.conf in Debian's nginx (its port, upstream addresses and paths"
            " changed, nothing else). Two processes for the service instead of one, on the same"
            " cores: what a second replica buys on this machine, nginx's cost included.",
        )
    if name in WORKER_VARIANTS:
        description = description.replace(
            "with one worker.",
            f"with {WORKERS} workers (WEB_CONCURRENCY={WORKERS}) and the same"
            f" DB__CONNECTION_BUDGET=20, so {WORKERS} pools of {POOL_SIZE // WORKERS}: the"
            f" `{WORKER_VARIANTS[name]}` row's project and settings but for the worker count."
            " Its app CPU is the whole process tree's, the supervisor's and every worker's.",
        )
    if name in CACHE_HIT_VARIANTS:
        description += (
            " Its cache is the throwaway Redis (REDIS_URL, CACHE__TTL=86400). Every order id was"
            " fetched once before the checks, so each measured request is one Redis GET and no"
            " query: checked every round against Redis' keyspace_hits and keyspace_misses."
        )
    return Variant(name, f"{PROJECT_LABELS[name]}: {', '.join(shape)}", description)
