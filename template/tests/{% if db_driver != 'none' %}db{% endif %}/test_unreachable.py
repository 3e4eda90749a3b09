"""An unreachable database: the service still starts (unready), and requests get a fast 503."""

import anyio
import httpx2
import pytest
from pydantic import SecretStr

from app.settings import Settings

pytestmark = pytest.mark.anyio

# A guard against hangs, not a speed assertion: connecting is refused at once.
HANG_GUARD_SECONDS = 10


@pytest.fixture
def settings(settings: Settings, unreachable_url: str) -> Settings:
    # From the test settings, so this test keeps its own cache namespace.
    return settings.model_copy(update={"database_url": SecretStr(unreachable_url)})


async def test_requests_get_a_503_with_retry_after(client: httpx2.AsyncClient) -> None:
    with anyio.fail_after(HANG_GUARD_SECONDS):
        response = await client.get("/orders/1")

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["detail"] == "The database is unavailable; retry shortly."


async def test_readyz_is_503_naming_the_database(client: httpx2.AsyncClient) -> None:
    # Started without its database, the pod stays out of rotation instead of being restarted.
    with anyio.fail_after(HANG_GUARD_SECONDS):
        response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["database"]["status"] == "failed"


async def test_livez_does_not_care(client: httpx2.AsyncClient) -> None:
    assert (await client.get("/livez")).status_code == 200
