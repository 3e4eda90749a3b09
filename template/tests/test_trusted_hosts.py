"""Trusted hosts: off by default; when listed, another Host gets a 400 problem, probes never do."""

import httpx2
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from starlette.types import Message

from app.settings import Settings, describe_error
from app.trusted_hosts import TrustedHostMiddleware

pytestmark = pytest.mark.anyio

TRUSTED = ("api.example.com", "*.internal.example.com")


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """The suite's settings, with the hosts a test passes by indirect parametrization, or none."""
    trusted_hosts: tuple[str, ...] = getattr(request, "param", ())
    return settings.model_copy(update={"trusted_hosts": trusted_hosts})


@pytest.fixture
def app(app: FastAPI) -> FastAPI:
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    app.add_api_route("/_test/hello", hello)
    return app


async def test_by_default_any_host_is_served(client: httpx2.AsyncClient) -> None:
    response = await client.get("/_test/hello", headers={"Host": "anything.example"})

    assert response.status_code == 200


@pytest.mark.parametrize("settings", [TRUSTED], indirect=True)
@pytest.mark.parametrize(
    "host", ["api.example.com", "API.Example.com:8443", "eu.internal.example.com"]
)
async def test_a_listed_host_is_served(client: httpx2.AsyncClient, host: str) -> None:
    response = await client.get("/_test/hello", headers={"Host": host})

    assert response.status_code == 200


@pytest.mark.parametrize("settings", [TRUSTED], indirect=True)
@pytest.mark.parametrize(
    "host",
    [
        "attacker.example",
        "api.example.com.attacker.example",
        # A wildcard names subdomains, not the domain itself.
        "internal.example.com",
        "10.0.0.7:8000",
    ],
)
async def test_another_host_gets_a_400_problem(client: httpx2.AsyncClient, host: str) -> None:
    response = await client.get("/_test/hello", headers={"Host": host})

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["detail"] == "The Host header names a host this service does not serve."
    assert body["request_id"] == response.headers["x-request-id"]
    assert response.headers["server-timing"].startswith("app;dur=")


@pytest.mark.parametrize("settings", [TRUSTED], indirect=True)
async def test_probes_answer_whatever_the_host(client: httpx2.AsyncClient) -> None:
    # What a kubelet sends: the pod's IP and port.
    headers = {"Host": "10.0.0.7:8000"}

    assert (await client.get("/livez", headers=headers)).status_code == 200
    assert (await client.get("/readyz", headers=headers)).status_code == 200


async def test_no_host_header_and_websockets_of_another_host_are_refused() -> None:
    sent: list[Message] = []

    async def unreachable(scope: object, receive: object, send: object) -> None:
        raise AssertionError("the request reached the app")

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    check = TrustedHostMiddleware(unreachable, trusted_hosts=TRUSTED, always_allow=["/livez"])
    # HTTP/1.0 needs no Host header; nothing then says which host the client asked for.
    await check({"type": "http", "path": "/", "headers": []}, receive, send)
    websocket = {"type": "websocket", "path": "/ws", "headers": [(b"host", b"attacker.example")]}
    await check(websocket, receive, send)

    assert sent[0]["status"] == 400
    # Closed before the handshake is accepted: the server refuses it with a 403.
    assert sent[-1] == {"type": "websocket.close", "code": 1008}


@pytest.mark.parametrize(
    "hosts",
    [
        '["*"]',
        "https://api.example.com",
        "api.example.com:443",
        "api.example.com/v1",
        "api.*.example.com",
    ],
)
def test_a_host_the_check_could_never_match_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, hosts: str
) -> None:
    monkeypatch.setenv("TRUSTED_HOSTS", hosts)

    with pytest.raises(ValidationError) as caught:
        Settings()

    assert describe_error(caught.value).startswith("invalid configuration: TRUSTED_HOSTS: ")
