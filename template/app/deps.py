"""Typed access to the lifespan's resources, as Annotated dependencies for routes.

Every dependency here and beside the resources (get_queue) is `async def` though it only reads
request.state: FastAPI runs a plain `def` dependency in the thread pool, which cost a cache hit
about 100 us of CPU per request (bench/results/LAYERS.md), a fifth of its whole cost. The cache
hit's route takes none at all (app.cache.cache_of).
"""

from typing import Annotated

import httpx2
from fastapi import Depends, Request

from app.readiness import ReadinessCheck
from app.settings import Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


async def get_http_client(request: Request) -> httpx2.AsyncClient:
    client: httpx2.AsyncClient = request.state.http_client
    return client


async def get_readiness_checks(request: Request) -> list[ReadinessCheck]:
    checks: list[ReadinessCheck] = request.state.readiness_checks
    return checks


SettingsDep = Annotated[Settings, Depends(get_settings)]
HttpClientDep = Annotated[httpx2.AsyncClient, Depends(get_http_client)]
ReadinessChecksDep = Annotated[list[ReadinessCheck], Depends(get_readiness_checks)]
