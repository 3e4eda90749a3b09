"""Failures answer with a JSON problem body (RFC 9457) and the request id, never a traceback."""

from collections.abc import AsyncIterator

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from app.errors import ServiceUnavailableError

pytestmark = pytest.mark.anyio


@pytest.fixture
def app(app: FastAPI) -> FastAPI:
    async def needs_a_number(count: int) -> dict[str, int]:
        return {"count": count}

    async def crashes() -> None:
        raise RuntimeError("secret internals")

    async def crashes_mid_body() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"the first part"
            raise RuntimeError("failed mid-body")

        return StreamingResponse(body())

    async def database_down() -> None:
        raise ServiceUnavailableError("The database is unavailable.", retry_after=3)

    app.add_api_route("/_test/number", needs_a_number)
    app.add_api_route("/_test/number", needs_a_number, methods=["PUT"])
    app.add_api_route("/_test/crash", crashes)
    app.add_api_route("/_test/crash-mid-body", crashes_mid_body)
    app.add_api_route("/_test/unavailable", database_down)
    return app


def assert_problem(response: httpx2.Response, status: int) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def test_not_found_is_a_problem(client: httpx2.AsyncClient) -> None:
    body = assert_problem(await client.get("/nowhere"), 404)

    assert body["title"] == "Not Found"


async def test_validation_errors_stay_422_and_name_the_field(client: httpx2.AsyncClient) -> None:
    body = assert_problem(await client.get("/_test/number", params={"count": "many"}), 422)

    assert body["errors"] == [
        {
            "loc": ["query", "count"],
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "type": "int_parsing",
        }
    ]


async def test_a_crash_is_a_500_problem_without_internals(
    client: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.get("/_test/crash")
    body = assert_problem(response, 500)

    assert "secret internals" not in response.text
    assert "Traceback" not in response.text
    assert "server-timing" in response.headers
    [record] = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert record.exc_info is not None
    assert body["title"] == "Internal Server Error"


async def test_a_crash_after_the_headers_went_out_is_logged_once_and_no_500_follows(
    client: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    # The 200's headers are sent: a 500 now would be a second response start on the connection
    # (the ASGI transport asserts there is none). The error goes on up, for the server to cut
    # the connection, and is logged once here.
    with pytest.raises(RuntimeError, match="failed mid-body"):
        await client.get("/_test/crash-mid-body")

    [record] = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert record.exc_info is not None


async def test_an_unavailable_dependency_is_a_503_with_retry_after(
    client: httpx2.AsyncClient,
) -> None:
    response = await client.get("/_test/unavailable")
    body = assert_problem(response, 503)

    assert response.headers["retry-after"] == "3"
    assert body["detail"] == "The database is unavailable."


async def test_wrong_method_is_a_405_problem(client: httpx2.AsyncClient) -> None:
    response = await client.post("/livez")

    assert_problem(response, 405)
    assert response.headers["allow"] == "GET"


async def test_405_allows_every_method_of_the_path_not_only_the_first_routes(
    client: httpx2.AsyncClient,
) -> None:
    response = await client.delete("/_test/number")

    assert_problem(response, 405)
    assert response.headers["allow"] == "GET, PUT"
