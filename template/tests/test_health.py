"""The liveness probe answers without touching anything external."""

import httpx2
import pytest

pytestmark = pytest.mark.anyio


async def test_livez_answers_ok(client: httpx2.AsyncClient) -> None:
    response = await client.get("/livez")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_probes_stay_out_of_the_api_schema(client: httpx2.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()

    assert "/livez" not in schema["paths"]
