"""Bodies over MAX_BODY_BYTES get a 413 problem before they are read; every error is documented."""

from collections.abc import AsyncIterator

import httpx2
import pytest
from fastapi import FastAPI, Request

from app.settings import Settings

pytestmark = pytest.mark.anyio

LIMIT = 1_000


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_body_bytes": LIMIT})


@pytest.fixture
def app(app: FastAPI) -> FastAPI:
    async def echo_length(request: Request) -> dict[str, int]:
        request.app.state.bodies_read += 1
        return {"length": len(await request.body())}

    async def takes_json(payload: dict[str, int]) -> dict[str, int]:
        return payload

    app.add_api_route("/_test/echo", echo_length, methods=["POST"])
    app.add_api_route("/_test/json", takes_json, methods=["POST"])
    app.state.bodies_read = 0
    return app


async def chunks(total: int, size: int = 100) -> AsyncIterator[bytes]:
    """A body without Content-Length: httpx sends it chunked."""
    for _ in range(total // size):
        yield b"x" * size


def assert_413(response: httpx2.Response) -> None:
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == f"The request body is larger than {LIMIT} bytes."
    assert response.json()["request_id"] == response.headers["x-request-id"]


async def test_a_body_at_the_limit_is_read(client: httpx2.AsyncClient) -> None:
    response = await client.post("/_test/echo", content=b"x" * LIMIT)

    assert response.status_code == 200
    assert response.json() == {"length": LIMIT}


async def test_a_declared_length_over_the_limit_is_refused_unread(
    app: FastAPI, client: httpx2.AsyncClient
) -> None:
    assert_413(await client.post("/_test/echo", content=b"x" * (LIMIT + 1)))
    assert app.state.bodies_read == 0


async def test_a_chunked_body_is_cut_off_at_the_limit(
    app: FastAPI, client: httpx2.AsyncClient
) -> None:
    assert_413(await client.post("/_test/echo", content=chunks(LIMIT * 5)))
    # The endpoint started reading, was told the client left, and sent nothing of its own.
    assert app.state.bodies_read == 1


async def test_a_chunked_body_under_the_limit_is_read(client: httpx2.AsyncClient) -> None:
    response = await client.post("/_test/echo", content=chunks(LIMIT))

    assert response.json() == {"length": LIMIT}


async def test_every_error_response_is_documented_as_a_problem(client: httpx2.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()

    assert "Problem" in document["components"]["schemas"]
    assert "HTTPValidationError" not in document["components"]["schemas"]
    errors = [
        (path, method, status, response)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        for status, response in operation["responses"].items()
        if status[0] in "45"
    ]
    assert errors
    for path, method, status, response in errors:
        assert response["content"] == {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        }, (path, method, status)
    with_body = document["paths"]["/_test/json"]["post"]["responses"]
    assert {"400", "413", "422", "500", "503"} <= set(with_body)
    assert "Retry-After" in with_body["503"]["headers"]
