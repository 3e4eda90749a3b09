"""The lifespan owns the shared resources: opened at start-up, closed at shutdown."""

import httpx2
import pytest
from anyio import to_thread

from app.main import create_app
from app.settings import HttpClientSettings, Settings

pytestmark = pytest.mark.anyio


async def test_state_holds_an_open_client_that_shutdown_closes() -> None:
    settings = Settings(environment="test", max_threads=7)
    app = create_app(settings)

    async with app.router.lifespan_context(app) as state:
        assert state is not None
        client = state["http_client"]
        assert isinstance(client, httpx2.AsyncClient)
        assert not client.is_closed
        assert state["settings"] is settings
        assert to_thread.current_default_thread_limiter().total_tokens == 7

    assert client.is_closed


async def test_outbound_client_uses_the_configured_timeouts() -> None:
    settings = Settings(
        environment="test", http=HttpClientSettings(connect_timeout=0.25, pool_timeout=0.5)
    )
    app = create_app(settings)

    async with app.router.lifespan_context(app) as state:
        assert state is not None
        timeout = state["http_client"].timeout

    assert timeout.connect == 0.25
    assert timeout.pool == 0.5
