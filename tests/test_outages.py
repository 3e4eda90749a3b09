"""Outages in the middle of load: every answer a 200 or a 503 with Retry-After, and recovery.

Each PostgreSQL driver's rendering is served by `uv run serve` on a PostgreSQL of the test's own,
under closed-loop load (tests/loadgen.py) on GET /orders (pages), while the test takes the database
down and up again, or freezes it (SIGSTOP of the postmaster and every backend). The test waits
on what the load saw (a 503 after the outage began, a 200 after it ended), never on a clock; the
recovery times it prints are figures for the record, not assertions. A partner API that hangs
under load makes quotes 504s at their deadline while every other route keeps answering.
"""

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Render
from tests.loadgen import Load, Sample
from tests.matrix import COMBINATIONS
from tests.services import LOOPBACK, Postgres, postgres
from tests.serving import POSTGRES_DRIVERS, migrated_and_seeded, services_env, serving

pytestmark = pytest.mark.slow

ORDERS, ITEMS = 50, 5
CONNECTIONS = 8
# Samples of steady load taken before an outage, and after recovery.
STEADY_SAMPLES = 100


@pytest.fixture
def own_postgres() -> Iterator[Postgres]:
    """A PostgreSQL of this test alone: stopping or freezing it disturbs no other test (and
    never a server that TEST_POSTGRES_URL names)."""
    with postgres(from_env=False) as server:
        yield server


def _rendering(driver: str) -> dict[str, str]:
    """A rendering of this driver that the matrix tests anyway."""
    return next(
        combination for combination in COMBINATIONS if combination.get("db_driver") == driver
    )


@dataclass(frozen=True)
class Outage:
    began: float
    ended: float
    # When the first request that then succeeded started.
    first_ok: float


def _load_through(
    load: Load,
    outage: AbstractContextManager[None],
    lasts_until: str,
    ends: Callable[[float], bool],
) -> Outage:
    """Steady load, then `outage` until `ends(began)` holds, then steady load again."""
    load.wait_for("steady load", lambda: len(load.ended_since(0, 200)) >= STEADY_SAMPLES)
    with outage:
        began = time.monotonic()
        load.wait_for(lasts_until, lambda: ends(began))
    ended = time.monotonic()
    load.wait_for("a 200 after the outage", lambda: bool(load.ended_since(ended, 200)))
    first_ok = min(sample.started for sample in load.ended_since(ended, 200))
    load.wait_for(
        "steady load after the outage",
        lambda: len(load.ended_since(first_ok, 200)) >= STEADY_SAMPLES,
    )
    return Outage(began, ended, first_ok)


def _assert_recovered(samples: list[Sample], outage: Outage) -> None:
    """No failure of any other kind, and from the first success on, nothing fails: a connection
    that died or hung with the server is never handed to a request again, no restart needed."""
    _assert_only_ok_or_unavailable(samples)
    after = [sample for sample in samples if sample.started >= outage.first_ok]
    assert [sample for sample in after if sample.status != 200] == []


def _assert_only_ok_or_unavailable(samples: list[Sample]) -> None:
    """No request failed in another way: no 500, no transport error, no 503 without Retry-After."""
    other = [
        sample
        for sample in samples
        if not (
            sample.status == 200
            or (
                sample.status == 503
                and sample.retry_after is not None
                and sample.content_type == "application/problem+json"
            )
        )
    ]
    assert not other, other[:5]


def _served_project(
    request: pytest.FixtureRequest,
    render: Render,
    synced: Callable[[Path], Path],
    driver: str,
    database: Postgres,
) -> tuple[Path, dict[str, str]]:
    project = synced(render(**_rendering(driver)))
    # Redis too where the rendering has a queue; the database is this test's own.
    env = {**services_env(request, project), "DATABASE_URL": database.url_for()}
    migrated_and_seeded(project, env, orders=ORDERS, items=ITEMS)
    return project, env


def _path(number: int) -> str:
    # A page of orders: never cached, so every request needs the database (GET /orders/{id}
    # would be a cache hit in the renderings with a cache).
    return f"/orders?limit=5&after={number % ORDERS}"


@pytest.mark.parametrize("driver", sorted(POSTGRES_DRIVERS))
def test_postgres_restarted_mid_load_only_503s_then_every_request_succeeds(
    request: pytest.FixtureRequest,
    render: Render,
    synced: Callable[[Path], Path],
    own_postgres: Postgres,
    tmp_path: Path,
    driver: str,
) -> None:
    project, env = _served_project(request, render, synced, driver, own_postgres)

    with (
        serving(project, env, tmp_path / "serve.log") as served,
        Load(served.base_url, _path, connections=CONNECTIONS) as load,
    ):
        # stopped() returns once PostgreSQL accepts connections again. Down until the load has
        # met the outage on every client connection.
        outage = _load_through(
            load,
            own_postgres.stopped(),
            "503s while the database is down",
            lambda began: len(load.ended_since(began, 503)) >= 2 * CONNECTIONS,
        )

    samples = list(load.samples)
    print(
        f"{driver}: {len(samples)} requests, down {outage.ended - outage.began:.2f} s,"
        f" {sum(sample.status == 503 for sample in samples)} 503s, first 200"
        f" {outage.first_ok - outage.ended:.3f} s after PostgreSQL accepted connections"
    )
    _assert_recovered(samples, outage)


@pytest.mark.parametrize("driver", sorted(POSTGRES_DRIVERS))
def test_postgres_hanging_mid_load_every_request_ends_as_503_and_the_pool_recovers(
    request: pytest.FixtureRequest,
    render: Render,
    synced: Callable[[Path], Path],
    own_postgres: Postgres,
    tmp_path: Path,
    driver: str,
) -> None:
    project, env = _served_project(request, render, synced, driver, own_postgres)
    # One worker with a pool of 4 under 8 clients: every pooled connection is in a hung
    # statement, so one that leaked (never given back) would starve every request after the thaw.
    # A 1 s statement timeout, so the bound under test (statement timeout + hang grace, or the
    # pool timeout for a request waiting for a connection, or the connect timeout for a new one)
    # is a few seconds.
    env |= {"WEB_CONCURRENCY": "1", "DB__CONNECTION_BUDGET": "4", "DB__STATEMENT_TIMEOUT": "1"}

    with (
        serving(project, env, tmp_path / "serve.log") as served,
        Load(served.base_url, _path, connections=CONNECTIONS) as load,
    ):
        # Frozen until requests that began while it was frozen have been answered: without
        # deadlines they would hang until it thaws, and this wait would fail.
        outage = _load_through(
            load,
            own_postgres.paused(),
            "requests answered while the database hangs",
            lambda began: (
                sum(s.status is not None for s in load.ended_since(began)) >= 2 * CONNECTIONS
            ),
        )

    samples = list(load.samples)
    during = [s for s in samples if outage.began <= s.started and s.ended < outage.ended]
    print(
        f"{driver}: {len(samples)} requests, hung {outage.ended - outage.began:.2f} s,"
        f" {len(during)} ended during it, the longest {max(s.seconds for s in during):.2f} s;"
        f" first 200 {outage.first_ok - outage.ended:.3f} s after it thawed"
    )
    assert {sample.status for sample in during} == {503}
    # No connection leaked to the hang: the whole pool serves again.
    _assert_recovered(samples, outage)


@pytest.fixture
def hanging_partner() -> Iterator[str]:
    """A partner that takes connections and never answers: the kernel completes each handshake
    into the listen backlog, and nobody ever reads the request."""
    with socket.create_server((LOOPBACK, 0), backlog=1024) as listener:
        yield f"http://{LOOPBACK}:{listener.getsockname()[1]}"


def test_a_partner_hanging_mid_load_is_504s_and_other_routes_are_unaffected(
    request: pytest.FixtureRequest,
    render: Render,
    synced: Callable[[Path], Path],
    hanging_partner: str,
    tmp_path: Path,
) -> None:
    project = synced(render(**_rendering("sqlalchemy-asyncpg")))
    env = {
        **services_env(request, project),
        "PARTNERS__SHIPPING_URL": hanging_partner,
        "PARTNERS__TAX_URL": hanging_partner,
    }
    migrated_and_seeded(project, env, orders=ORDERS, items=ITEMS)

    with (
        serving(project, env, tmp_path / "serve.log") as served,
        Load(served.base_url, lambda n: f"/orders/{n % ORDERS + 1}/quote", connections=4) as quotes,
        Load(served.base_url, _path, connections=CONNECTIONS) as others,
    ):
        # Every quote client has waited out the partner deadline twice, and the other routes
        # kept serving meanwhile.
        quotes.wait_for("quotes answered", lambda: len(quotes.ended_since(0)) >= 8)
        others.wait_for(
            "other routes serving", lambda: len(others.ended_since(0)) >= STEADY_SAMPLES
        )

    quoted, served_meanwhile = list(quotes.samples), list(others.samples)
    print(
        f"{len(quoted)} quotes, the longest {max(sample.seconds for sample in quoted):.2f} s;"
        f" {len(served_meanwhile)} pages meanwhile, the longest"
        f" {max(sample.seconds for sample in served_meanwhile):.3f} s"
    )
    assert {(sample.status, sample.content_type) for sample in quoted} == {
        (504, "application/problem+json")
    }
    assert {sample.status for sample in served_meanwhile} == {200}
