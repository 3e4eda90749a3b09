"""/readyz runs every registered check concurrently, each bounded by its own timeout."""

import asyncio

import httpx2
import pytest
from fastapi import FastAPI, Request

from app.readiness import ReadinessCheck, check_readiness

pytestmark = pytest.mark.anyio


async def healthy() -> None:
    await asyncio.sleep(0)


async def broken() -> None:
    raise ConnectionRefusedError("connection refused")


async def hangs() -> None:
    await asyncio.sleep(3600)


async def test_ready_when_every_registered_dependency_answers(client: httpx2.AsyncClient) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert all(check["status"] == "ok" for check in body["checks"].values())


@pytest.fixture
def app(app: FastAPI) -> FastAPI:
    async def register(request: Request, name: str, required: bool = True) -> None:
        # request.state is a shallow copy of the lifespan state: the list is the registry itself.
        request.state.readiness_checks.append(ReadinessCheck(name, broken, required=required))

    app.add_api_route("/_test/register-broken", register, methods=["POST"])
    return app


async def test_a_failed_required_check_makes_readyz_503(client: httpx2.AsyncClient) -> None:
    await client.post("/_test/register-broken", params={"name": "database"})
    response = await client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unready"
    assert body["checks"]["database"]["status"] == "failed"
    assert body["checks"]["database"]["error"] == "ConnectionRefusedError: connection refused"


async def test_a_failed_optional_check_answers_200_degraded(client: httpx2.AsyncClient) -> None:
    await client.post("/_test/register-broken", params={"name": "cache", "required": "false"})
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["status"] == "degraded"


async def test_a_failed_optional_check_only_degrades() -> None:
    readiness = await check_readiness(
        [ReadinessCheck("database", healthy), ReadinessCheck("cache", broken, required=False)],
        seconds_each=10,
    )

    assert readiness.status == "degraded"


async def test_a_hanging_check_is_cut_at_its_timeout() -> None:
    readiness = await check_readiness([ReadinessCheck("database", hangs)], seconds_each=0.05)

    assert readiness.status == "unready"
    assert readiness.checks["database"].status == "timeout"
    assert readiness.checks["database"].error == "no answer within 0.05 s"
