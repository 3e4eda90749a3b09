"""CORS: off by default; when origins are listed, only they may read answers, errors included."""

import httpx2
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from app.settings import CorsSettings, Settings, describe_error

pytestmark = pytest.mark.anyio

ALLOWED = "https://app.example.com"
OTHER = "https://attacker.example"


def preflight(origin: str) -> dict[str, str]:
    """The headers of a browser's preflight before a JSON POST with a request id."""
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-request-id",
    }


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """The suite's settings, with the CORS a test passes by indirect parametrization, or none."""
    cors: CorsSettings = getattr(request, "param", CorsSettings())
    return settings.model_copy(update={"cors": cors})


@pytest.fixture
def app(app: FastAPI) -> FastAPI:
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    async def crashes() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/_test/hello", hello)
    app.add_api_route("/_test/crash", crashes)
    return app


ON = pytest.mark.parametrize("settings", [CorsSettings(allow_origins=(ALLOWED,))], indirect=True)


async def test_by_default_there_are_no_cors_headers(client: httpx2.AsyncClient) -> None:
    response = await client.get("/_test/hello", headers={"Origin": ALLOWED})
    refused = await client.options("/_test/hello", headers=preflight(ALLOWED))

    assert response.status_code == 200
    # Not answered as a preflight: routing says the path serves no OPTIONS.
    assert refused.status_code == 405
    assert refused.headers["content-type"] == "application/problem+json"
    for answer in (response, refused):
        assert not [name for name in answer.headers if name.startswith("access-control-")]


@ON
async def test_a_preflight_from_a_listed_origin_is_answered(client: httpx2.AsyncClient) -> None:
    response = await client.options("/_test/hello", headers=preflight(ALLOWED))

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in response.headers["access-control-allow-methods"].split(", ")
    allowed_headers = response.headers["access-control-allow-headers"].lower().split(", ")
    assert {"content-type", "x-request-id"} <= set(allowed_headers)
    assert response.headers["access-control-max-age"] == "600"
    assert "access-control-allow-credentials" not in response.headers


@ON
async def test_a_listed_origin_may_read_answers_and_errors(client: httpx2.AsyncClient) -> None:
    hello = await client.get("/_test/hello", headers={"Origin": ALLOWED})
    crash = await client.get("/_test/crash", headers={"Origin": ALLOWED})

    assert (hello.status_code, crash.status_code) == (200, 500)
    for response in (hello, crash):
        assert response.headers["access-control-allow-origin"] == ALLOWED
        assert "Origin" in response.headers["vary"]
        exposed = response.headers["access-control-expose-headers"].split(", ")
        assert {"X-Request-ID", "Retry-After", "Location"} <= set(exposed)


@ON
async def test_another_origin_is_given_no_allow_header(client: httpx2.AsyncClient) -> None:
    response = await client.get("/_test/hello", headers={"Origin": OTHER})
    refused = await client.options("/_test/hello", headers=preflight(OTHER))

    # The request is served (CORS is enforced by browsers), but no browser lets the page read it.
    assert response.status_code == 200
    assert refused.status_code == 400
    for answer in (response, refused):
        assert "access-control-allow-origin" not in answer.headers


@pytest.mark.parametrize(
    "settings",
    [CorsSettings(allow_origins=(ALLOWED,), allow_credentials=True)],
    indirect=True,
)
async def test_credentials_are_allowed_for_listed_origins(client: httpx2.AsyncClient) -> None:
    response = await client.options("/_test/hello", headers=preflight(ALLOWED))

    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert response.headers["access-control-allow-credentials"] == "true"


@pytest.mark.parametrize(
    ("environment", "variable"),
    [
        ({"CORS__ALLOW_ORIGINS": f'["*", "{ALLOWED}"]'}, "CORS__ALLOW_ORIGINS"),
        ({"CORS__ALLOW_ORIGINS": "*", "CORS__ALLOW_CREDENTIALS": "true"}, "CORS"),
        ({"CORS__ALLOW_ORIGINS": f"{ALLOWED}/"}, "CORS__ALLOW_ORIGINS"),
        ({"CORS__ALLOW_ORIGINS": "app.example.com"}, "CORS__ALLOW_ORIGINS"),
        ({"CORS__ALLOW_ORIGINS": "null"}, "CORS__ALLOW_ORIGINS"),
    ],
)
def test_a_policy_that_could_not_work_or_would_expose_users_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], variable: str
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(ValidationError) as caught:
        Settings()

    assert describe_error(caught.value).startswith(f"invalid configuration: {variable}: ")
