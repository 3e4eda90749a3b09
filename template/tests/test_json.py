"""Hot routes never pass through FastAPI's jsonable_encoder; bodies are encoded once, to bytes."""

import datetime as dt
import json
import uuid

import fastapi.encoders
import fastapi.routing
import httpx2
import pytest
from fastapi import FastAPI

from app.responses import JSONBytesResponse, encode_json

pytestmark = pytest.mark.anyio


@pytest.fixture
def app(app: FastAPI) -> FastAPI:
    async def naive() -> dict[str, str]:
        return {"through": "jsonable_encoder"}

    # No return type and a dict: FastAPI's slow path, to prove the trap below can spring.
    app.add_api_route("/_test/naive", naive, response_model=None)
    return app


@pytest.fixture
def jsonable_encoder_calls(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    calls: list[object] = []

    def recording(obj: object, *args: object, **kwargs: object) -> object:
        calls.append(obj)
        return obj

    monkeypatch.setattr(fastapi.routing, "jsonable_encoder", recording)
    monkeypatch.setattr(fastapi.encoders, "jsonable_encoder", recording)
    return calls


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/nowhere"])
async def test_probes_and_errors_skip_jsonable_encoder(
    client: httpx2.AsyncClient, jsonable_encoder_calls: list[object], path: str
) -> None:
    response = await client.get(path)

    assert response.json()
    assert jsonable_encoder_calls == []


async def test_the_trap_catches_a_route_that_uses_jsonable_encoder(
    client: httpx2.AsyncClient, jsonable_encoder_calls: list[object]
) -> None:
    await client.get("/_test/naive")

    assert jsonable_encoder_calls == [{"through": "jsonable_encoder"}]


def test_encode_json_handles_the_usual_types() -> None:
    order_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
    created = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    body = {"id": order_id, "created_at": created, "items": [{"qty": 2, "price": 1.5}]}

    decoded = json.loads(encode_json(body))

    assert decoded["id"] == "12345678-1234-5678-1234-567812345678"
    # Encoders spell UTC as "Z" or "+00:00"; both are the same ISO 8601 instant.
    assert dt.datetime.fromisoformat(decoded["created_at"]) == created
    assert decoded["items"] == [{"qty": 2, "price": 1.5}]


def test_json_bytes_pass_through_untouched() -> None:
    document = b'{"built":"by the database"}'

    response = JSONBytesResponse(document)

    assert response.body is document
    assert response.media_type == "application/json"
