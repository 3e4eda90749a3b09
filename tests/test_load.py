"""Under sustained keep-alive load, the configuration a project ships with loses no request.

Each server choice, with one worker and with two, is served by `uv run serve` with nothing but
its database and Redis set, and loaded with wrk (32 keep-alive connections) on GET /orders/{id}.
No request may fail: no connect, read or write error, no timeout, no status outside 2xx. Then
each server is stopped by SIGTERM under load (tests/loadgen.py, which knows when each request
began): every request sent before the signal is answered with a 200, for a client that sends a
GET again when its keep-alive connection closed before any response (RFC 9112 9.3.1; nginx and
browsers do): a server closing an idle connection at shutdown cannot see a request already on the
wire, and granian lost one that way in CI without the retry.
Speed is the benchmark's business; wrk's figures are printed for the record, never asserted.
"""

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bench import _wrk
from tests.conftest import Render, choice_values
from tests.loadgen import Load
from tests.matrix import sqlite_rendering
from tests.serving import migrated_and_seeded, services_env, serving

pytestmark = pytest.mark.slow

ORDERS, ITEMS = 50, 20
LOAD_SECONDS = 5
CONNECTIONS = 32
# A guard against a hang, not a speed limit: the drain takes well under a second here.
TERM_TIMEOUT_SECONDS = 60


def _order_path(number: int) -> str:
    return f"/orders/{number % ORDERS + 1}"


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("server", choice_values("server"))
def test_sustained_load_loses_no_request(
    request: pytest.FixtureRequest,
    render: Render,
    synced: Callable[[Path], Path],
    tmp_path: Path,
    server: str,
    workers: int,
) -> None:
    project = synced(render(**sqlite_rendering(server)))
    env = {
        **services_env(request, project),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'load.db'}",
        "WEB_CONCURRENCY": str(workers),
    }
    migrated_and_seeded(project, env, orders=ORDERS, items=ITEMS)

    with serving(project, env, tmp_path / "serve.log") as served:
        result = _wrk.load(
            served.base_url,
            duration=LOAD_SECONDS,
            connections=CONNECTIONS,
            max_id=ORDERS,
            seed=1,
        )

    print(f"{server}, {workers} worker(s): {result}")
    assert result.requests > 0
    assert result.error_count == 0, result.errors


@pytest.mark.parametrize("server", choice_values("server"))
def test_sigterm_under_load_fails_no_request_in_flight(
    request: pytest.FixtureRequest,
    render: Render,
    synced: Callable[[Path], Path],
    tmp_path: Path,
    server: str,
) -> None:
    # Shipped settings: as many workers as CPUs, SERVER__GRACEFUL_TIMEOUT 20 s.
    project = synced(render(**sqlite_rendering(server)))
    env = {**services_env(request, project), "DATABASE_URL": f"sqlite:///{tmp_path / 'term.db'}"}
    migrated_and_seeded(project, env, orders=ORDERS, items=ITEMS)

    with (
        serving(project, env, tmp_path / "serve.log") as served,
        Load(served.base_url, _order_path, connections=CONNECTIONS, retry_unanswered=True) as load,
    ):
        load.wait_for("steady load", lambda: len(load.ended_since(0, 200)) >= 200)
        terminated = time.monotonic()
        # As Kubernetes stops a pod: SIGTERM to the container's first process (uv, which passes
        # it on to the server).
        served.process.send_signal(signal.SIGTERM)
        code = served.process.wait(timeout=TERM_TIMEOUT_SECONDS)

    samples = list(load.samples)
    in_flight = [sample for sample in samples if sample.started < terminated]
    failed = [sample for sample in in_flight if sample.status != 200]
    after = [sample for sample in samples if sample.started >= terminated]
    print(
        f"{server}: {len(in_flight)} requests before SIGTERM, {len(after)} after it"
        f" ({sum(sample.status == 200 for sample in after)} answered while draining,"
        f" {sum(sample.retried for sample in samples)} sent twice)"
    )
    assert code == 0, served.log_text()
    assert failed == [], failed[:5]
