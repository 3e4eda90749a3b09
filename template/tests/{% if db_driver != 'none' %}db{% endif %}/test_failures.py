"""An exhausted pool is a fast 503 with Retry-After, not a queue or a hang; /readyz sees the DB."""

import anyio
import httpx2
import pytest
from fastapi import FastAPI

from app.db import ReadConnection
from app.main import create_app
from app.settings import Settings

pytestmark = pytest.mark.anyio

# A guard against hangs, not a speed assertion: the pool timeout is 0.2 s, connects are refused.
HANG_GUARD_SECONDS = 10


def assert_unavailable(response: httpx2.Response) -> None:
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["request_id"] == response.headers["x-request-id"]


async def test_readyz_reports_the_database(client: httpx2.AsyncClient) -> None:
    body = (await client.get("/readyz")).json()

    assert body["status"] == "ready"
    assert body["checks"]["database"]["status"] == "ok"


@pytest.fixture
def app(small_pool_settings: Settings) -> FastAPI:
    app = create_app(small_pool_settings)
    held = anyio.Event()
    release = anyio.Event()

    async def hold(connection: ReadConnection) -> dict[str, bool]:
        held.set()
        await release.wait()
        return {"held": True}

    app.add_api_route("/_test/hold", hold)
    app.state.held, app.state.release = held, release
    return app


async def test_an_exhausted_pool_is_a_503(app: FastAPI, client: httpx2.AsyncClient) -> None:
    async with anyio.create_task_group() as requests:
        requests.start_soon(client.get, "/_test/hold")
        await app.state.held.wait()
        with anyio.fail_after(HANG_GUARD_SECONDS):
            response = await client.get("/orders/1")
        app.state.release.set()

    assert_unavailable(response)
    assert response.json()["detail"] == "No database connection is free; retry shortly."
    # Released, the single connection serves again.
    assert (await client.get("/orders/1")).status_code == 200
