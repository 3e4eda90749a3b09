"""PROFILE_REQUESTS: a request with ?profile=1 gets its own profile; production refuses it."""

import time
from typing import Literal

import httpx2
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from app.main import create_app
from app.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def profile_requests() -> bool:
    return True


@pytest.fixture
def app(settings: Settings, profile_requests: bool) -> FastAPI:
    app = create_app(settings.model_copy(update={"profile_requests": profile_requests}))

    async def computes_in_the_event_loop() -> dict[str, int]:
        # CPU-bound work holds the loop as surely as a sync call does, and no blocking check can
        # see it: a profile can.
        deadline, spins = time.perf_counter() + 0.05, 0
        while time.perf_counter() < deadline:
            spins += 1
        return {"spins": spins}

    app.add_api_route("/_test/computes", computes_in_the_event_loop)
    return app


async def test_the_text_profile_names_the_function_that_holds_the_loop(
    client: httpx2.AsyncClient,
) -> None:
    response = await client.get("/_test/computes", params={"profile": "text"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert "computes_in_the_event_loop" in response.text
    assert not response.text.startswith('{"spins"')


async def test_profile_1_answers_the_html_report(client: httpx2.AsyncClient) -> None:
    response = await client.get("/livez", params={"profile": "1"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "pyinstrument" in response.text


async def test_a_request_without_profile_gets_its_own_response(client: httpx2.AsyncClient) -> None:
    response = await client.get("/_test/computes", params={"profile": "0"})

    assert response.json()["spins"] > 0


@pytest.mark.parametrize("profile_requests", [False])
async def test_with_the_switch_off_profile_is_ignored(client: httpx2.AsyncClient) -> None:
    response = await client.get("/_test/computes", params={"profile": "1"})

    assert response.json()["spins"] > 0


@pytest.mark.parametrize("environment", ["development", "test"])
def test_the_switch_is_allowed_in_development_and_test(
    environment: Literal["development", "test"],
) -> None:
    assert Settings(environment=environment, profile_requests=True).profile_requests


def test_the_switch_is_refused_in_production() -> None:
    with pytest.raises(ValidationError, match="PROFILE_REQUESTS is for development"):
        Settings(environment="production", profile_requests=True)
