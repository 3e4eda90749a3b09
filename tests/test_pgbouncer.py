"""Behind PgBouncer in transaction mode, every PostgreSQL driver serves the orders routes.

Debian's PgBouncer 1.18 keeps no prepared statement beyond the transaction that made it and
refuses startup parameters it does not track: what DB__PGBOUNCER=true must cope with. For each
PostgreSQL driver, the matrix's rendering is migrated as a deploy does it (MIGRATION_DATABASE_URL
straight to PostgreSQL, DATABASE_URL at PgBouncer, the service's own settings), served by
`uv run serve` through PgBouncer, and loaded by concurrent clients on every orders route: no
request may fail. PgBouncer has fewer server connections than the service has clients, so
consecutive transactions of one client land on different server sessions, as in production.
Then a statement stuck behind a lock must still be ended by DB__STATEMENT_TIMEOUT.

GET /orders/{id}/quote is loaded too, its partner APIs answered by a stub on loopback that always
quotes (how the service copes with partners that fail is the generated project's own tests).
"""

import asyncio
import configparser
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pytest
import yaml

from tests.commands import UV, run
from tests.conftest import Render
from tests.matrix import COMBINATIONS
from tests.services import LOOPBACK, PgBouncer, Postgres, pgbouncer_ini, postgres_bindir
from tests.serving import POSTGRES_DRIVERS, Served, services_env, serving

pytestmark = pytest.mark.slow

ORDERS, ITEMS = 200, 5
LOAD_SECONDS = 3
CLIENTS = 16
# Low enough that a hiccup of a loaded CI machine never trips it during the load, high enough
# that the statement stuck behind a lock waits a moment only.
STATEMENT_TIMEOUT_SECONDS = 1.0
# The client-side deadline of a statement is the timeout plus this: so long that only the
# database's own statement_timeout can have ended the stuck statement in time.
HANG_GRACE_SECONDS = 60
REQUEST_TIMEOUT_SECONDS = 30
# A guard against a hang, not a speed limit.
LOCK_TIMEOUT_SECONDS = 30
# The partners' deadlines (0.8 s and 0.3 s as shipped) are not this test's subject: a stub in
# the test's own process, sharing two loaded cores with the load, gets a hang guard instead.
PARTNER_TIMEOUT_SECONDS = 10
# One answer for both partners: each reads its own fields (the models ignore the others).
QUOTE = json.dumps({"shipping_cents": 500, "carrier": "stub", "tax_cents": 120}).encode()


def answers_for(driver: str) -> dict[str, str]:
    """The matrix's answer set for this driver, so that its rendering is shared with the matrix."""
    return next(answers for answers in COMBINATIONS if answers.get("db_driver") == driver)


def psql(postgres: Postgres, database: str) -> list[str]:
    """psql straight to PostgreSQL as the app's user (PGPASSWORD in psql_env)."""
    return [
        str(postgres_bindir() / "psql"),
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        postgres.host,
        "-p",
        str(postgres.port),
        "-U",
        postgres.user,
        "-d",
        database,
    ]


def psql_env(postgres: Postgres) -> dict[str, str]:
    return {**os.environ, "PGPASSWORD": postgres.password}


@contextmanager
def database_of_its_own(postgres: Postgres, name: str) -> Iterator[str]:
    """A new, empty database for the block: the migrations set defaults on it, which the other
    tests' database must not get."""
    command, env = psql(postgres, postgres.database), psql_env(postgres)
    run([*command, "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], Path.cwd(), env=env)
    run([*command, "-c", f"CREATE DATABASE {name}"], Path.cwd(), env=env)
    try:
        yield name
    finally:
        run([*command, "-c", f"DROP DATABASE {name} WITH (FORCE)"], Path.cwd(), env=env)


def url_of(server: Postgres | PgBouncer, database: str) -> str:
    return server.url_for().rsplit("/", 1)[0] + f"/{database}"


@dataclass
class Outcome:
    """What the load saw: responses by route and status, and every failure in full."""

    counts: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Call:
    route: str
    method: str
    path: str
    status: int
    body: dict[str, object] | None = None


def call_for(number: int) -> Call:
    """The `number`th request: every orders route in turn."""
    order, customer = number % ORDERS + 1, number % (ORDERS // 10) + 1
    calls = [
        Call("GET /orders/{id}", "GET", f"/orders/{order}", 200),
        Call("GET /orders?customer_id", "GET", f"/orders?customer_id={customer}&limit=5", 200),
        Call("GET /orders?after", "GET", f"/orders?after={order}&limit=20", 200),
        Call("GET /orders/{id}/quote", "GET", f"/orders/{order}/quote", 200),
        Call(
            "POST /orders",
            "POST",
            "/orders",
            201,
            {
                "customer_id": customer,
                "items": [{"sku": f"SKU-{number % 97}", "quantity": 1, "unit_price_cents": 250}],
            },
        ),
    ]
    return calls[number % len(calls)]


ROUTES = {call.route: call.status for call in map(call_for, range(5))}


class _QuoteHandler(BaseHTTPRequestHandler):
    """POST /quote of both partner APIs, answered at once; keep-alive, as real partners are."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status = 200 if self.path == "/quote" else 404
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(QUOTE)))
        self.end_headers()
        self.wfile.write(QUOTE)

    def log_message(self, format: str, *args: object) -> None:
        pass  # a line per call on the test's stderr says nothing a failure would not


@contextmanager
def partners() -> Iterator[dict[str, str]]:
    """The PARTNERS__* settings of a stub that quotes every order, running for the block."""
    server = ThreadingHTTPServer((LOOPBACK, 0), _QuoteHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="partner-stub", daemon=True)
    thread.start()
    url = f"http://{LOOPBACK}:{server.server_address[1]}"
    try:
        yield {
            "PARTNERS__SHIPPING_URL": url,
            "PARTNERS__TAX_URL": url,
            "PARTNERS__SHIPPING_TIMEOUT": str(PARTNER_TIMEOUT_SECONDS),
            "PARTNERS__TAX_TIMEOUT": str(PARTNER_TIMEOUT_SECONDS),
        }
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _wrong(call: Call, response: httpx2.Response) -> str | None:
    """Why the response is wrong, or None. An order's document must be that order's: a statement
    bound to another client's statement on a shared server session would answer 200 too."""
    if response.status_code != call.status:
        return f"{response.status_code} {response.text[:300]}"
    if call.route == "GET /orders/{id}" and str(response.json()["id"]) != call.path.split("/")[-1]:
        return f"another order's document: {response.text[:300]}"
    return None


async def _client(client: httpx2.AsyncClient, number: int, until: float, outcome: Outcome) -> None:
    sent = number
    while time.monotonic() < until:
        call = call_for(sent)
        sent += 1
        try:
            response = await client.request(call.method, call.path, json=call.body)
        except httpx2.TransportError as error:
            outcome.failures.append(f"{call.route}: {type(error).__name__}: {error}")
            continue
        outcome.counts[call.route, response.status_code] += 1
        wrong = _wrong(call, response)
        if wrong is not None:
            outcome.failures.append(f"{call.path}: {wrong}")


async def _load(base_url: str, seconds: float) -> Outcome:
    outcome = Outcome()
    until = time.monotonic() + seconds
    limits = httpx2.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx2.AsyncClient(
        base_url=base_url, timeout=REQUEST_TIMEOUT_SECONDS, limits=limits, trust_env=False
    ) as client:
        await asyncio.gather(*(_client(client, n, until, outcome) for n in range(CLIENTS)))
    return outcome


def load_every_orders_route(served: Served, seconds: float = LOAD_SECONDS) -> Outcome:
    """CLIENTS concurrent clients, each cycling through ROUTES for `seconds`."""
    return asyncio.run(_load(served.base_url, seconds))


@contextmanager
def orders_locked(postgres: Postgres, database: str) -> Iterator[None]:
    """The orders table locked by a session straight to PostgreSQL until the block ends."""
    locker = subprocess.Popen(
        psql(postgres, database),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=psql_env(postgres),
        text=True,
    )
    assert locker.stdin is not None
    assert locker.stdout is not None
    try:
        locker.stdin.write("BEGIN;\nLOCK TABLE orders IN ACCESS EXCLUSIVE MODE;\n\\echo locked\n")
        locker.stdin.flush()
        # psql runs its input in order: the marker comes once the lock is held.
        line = locker.stdout.readline()
        assert line.strip() == "locked", f"psql could not lock the orders table: {line}"
        yield
    finally:
        locker.stdin.write("ROLLBACK;\n")
        locker.stdin.close()
        locker.wait(LOCK_TIMEOUT_SECONDS)
        locker.stdout.close()


@pytest.mark.parametrize("driver", sorted(POSTGRES_DRIVERS))
def test_every_orders_route_serves_through_pgbouncer(
    request: pytest.FixtureRequest,
    render: Render,
    synced: Callable[[Path], Path],
    postgres_server: Postgres,
    pgbouncer_server: PgBouncer,
    tmp_path: Path,
    driver: str,
) -> None:
    project = synced(render(**answers_for(driver)))
    name = f"pgbouncer_test_{driver.replace('-', '_')}"
    with database_of_its_own(postgres_server, name), partners() as partner_settings:
        direct, pooled = url_of(postgres_server, name), url_of(pgbouncer_server, name)
        env = {
            **services_env(request, project),
            # As a deploy sets it, for the migration Job and the service alike.
            "DATABASE_URL": pooled,
            "MIGRATION_DATABASE_URL": direct,
            "DB__PGBOUNCER": "true",
            "DB__STATEMENT_TIMEOUT": str(STATEMENT_TIMEOUT_SECONDS),
            "DB__HANG_GRACE": str(HANG_GRACE_SECONDS),
            "WEB_CONCURRENCY": "1",
            **partner_settings,
        }
        run([UV, "run", "alembic", "upgrade", "head"], project, env=env)
        seed = ["python", "-m", "app.seed", f"--orders={ORDERS}", f"--items-per-order={ITEMS}"]
        run([UV, "run", *seed], project, env={**env, "DATABASE_URL": direct})

        with serving(project, env, tmp_path / "serve.log") as served:
            outcome = load_every_orders_route(served)
            print(f"{driver} through PgBouncer: {dict(outcome.counts)}")
            assert not outcome.failures, (
                f"{len(outcome.failures)} failed requests, the first ones:\n"
                + "\n".join(outcome.failures[:10])
                + f"\n--- serve log ---\n{served.log_text()[-4000:]}"
            )
            for route, status in ROUTES.items():
                assert outcome.counts[route, status] > 0, f"{route} was never answered"

            # The service sent no statement_timeout: the database's default, which the migrations
            # set from DB__STATEMENT_TIMEOUT, must end a statement stuck behind a lock.
            with httpx2.Client(base_url=served.base_url, timeout=REQUEST_TIMEOUT_SECONDS) as client:
                with orders_locked(postgres_server, name):
                    stuck = client.get("/orders", params={"limit": 1})
                after = client.get("/orders", params={"limit": 1})
            assert stuck.status_code == 503, stuck.text
            assert stuck.json()["detail"] == "The database did not answer in time; retry shortly."
            assert after.status_code == 200, after.text


def test_compose_runs_the_app_behind_pgbouncer_as_these_tests_do(render: Render) -> None:
    """The optional PgBouncer of compose.yaml (profile "pgbouncer") is wired as tested above."""
    project = render(**answers_for("sqlalchemy-asyncpg"))
    # `configs: content:` is recent Compose: the vendored compose-spec schema knows it.
    schema = ["--builtin-schema", "vendor.compose-spec", str(project / "compose.yaml")]
    run([str(Path(sys.executable).with_name("check-jsonschema")), *schema], project)
    compose = yaml.safe_load((project / "compose.yaml").read_text())
    services = compose["services"]
    behind = services["app-pgbouncer"]["environment"]
    pooled = urlsplit(behind["DATABASE_URL"])
    assert (
        services["app-pgbouncer"]["profiles"] == services["pgbouncer"]["profiles"] == ["pgbouncer"]
    )
    assert pooled.hostname == "pgbouncer"
    assert behind["DB__PGBOUNCER"] == "true"
    assert "DB__PGBOUNCER" not in services["app"]["environment"]
    # Migrations go straight to PostgreSQL, and set the defaults the pooled app cannot send.
    migrate = services["migrate"]["environment"]
    assert urlsplit(migrate["MIGRATION_DATABASE_URL"]).hostname == "db"
    assert migrate["DB__PGBOUNCER"] == "true"

    ini = configparser.ConfigParser()
    ini.read_string(compose["configs"]["pgbouncer-ini"]["content"])
    tested = configparser.ConfigParser()
    tested.read_string(pgbouncer_ini(Postgres("db", 5432, "app", "", "app"), 5432, Path("/etc")))
    for setting in ("pool_mode", "auth_type"):
        assert ini["pgbouncer"][setting] == tested["pgbouncer"][setting], setting
    assert ini["databases"][pooled.path.lstrip("/")].startswith("host=db port=5432")
    # PgBouncer checks the app's password, then logs in to PostgreSQL with it.
    user, password = compose["configs"]["pgbouncer-userlist"]["content"].split()
    assert (user.strip('"'), password.strip('"')) == (pooled.username, pooled.password)
