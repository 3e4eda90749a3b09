"""Admission control: past SERVER__MAX_IN_FLIGHT, a request gets 503 at once; probes never do."""

import anyio
import httpx2
import pytest
from fastapi import FastAPI

from app.settings import Settings

pytestmark = pytest.mark.anyio

# A guard against hangs, not a speed assertion: nothing below waits for anything but events.
HANG_GUARD_SECONDS = 10


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"server": settings.server.model_copy(update={"max_in_flight": 2})}
    )


@pytest.fixture
def app(app: FastAPI) -> FastAPI:
    app.state.entered = 0
    app.state.two_in = anyio.Event()
    app.state.release = anyio.Event()

    async def hold() -> dict[str, bool]:
        app.state.entered += 1
        if app.state.entered == 2:
            app.state.two_in.set()
        await app.state.release.wait()
        return {"held": True}

    async def quick() -> dict[str, bool]:
        return {"quick": True}

    app.add_api_route("/_test/hold", hold)
    app.add_api_route("/_test/quick", quick)
    return app


async def test_past_the_limit_a_request_is_refused_at_once_and_probes_still_answer(
    app: FastAPI, client: httpx2.AsyncClient
) -> None:
    held: list[httpx2.Response] = []

    async def hold() -> None:
        held.append(await client.get("/_test/hold"))

    with anyio.fail_after(HANG_GUARD_SECONDS):
        async with anyio.create_task_group() as requests:
            requests.start_soon(hold)
            requests.start_soon(hold)
            await app.state.two_in.wait()

            refused = await client.get("/_test/quick")
            livez = await client.get("/livez")
            readyz = await client.get("/readyz")
            app.state.release.set()
        after = await client.get("/_test/quick")

    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["detail"] == "The service is at capacity; retry shortly."
    assert refused.json()["request_id"] == refused.headers["x-request-id"]
    assert refused.headers["server-timing"].startswith("app;dur=")
    assert (livez.status_code, readyz.status_code) == (200, 200)
    assert [response.status_code for response in held] == [200, 200]
    # The held requests left: their places are free again.
    assert after.status_code == 200
