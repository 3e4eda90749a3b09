"""Under sustained keep-alive load, the configuration a project ships with loses no request.

Each server choice, with one worker and with two, is served by `uv run serve` with nothing but
its database and Redis set, and loaded with wrk (32 keep-alive connections) on GET /orders/{id}.
No request may fail: no connect, read or write error, no timeout, no status outside 2xx.
Speed is the benchmark's business; wrk's figures are printed for the record, never asserted.
"""

from collections.abc import Callable
from pathlib import Path

import pytest

from bench import _wrk
from tests.conftest import Render, choice_values
from tests.matrix import COMBINATIONS
from tests.serving import migrated_and_seeded, services_env, serving

pytestmark = pytest.mark.slow

ORDERS, ITEMS = 50, 20
LOAD_SECONDS = 5
CONNECTIONS = 32


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
    # A rendering the matrix tests anyway (SQLite, so every worker count gets a database of its
    # own in tmp_path), with this server.
    answers = next(
        combination
        for combination in COMBINATIONS
        if combination.get("server") == server
        and combination.get("db_driver") == "sqlalchemy-aiosqlite"
        and combination.get("json_encoder") == "orjson"
    )
    project = synced(render(**answers))
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
