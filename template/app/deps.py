"""Typed access to the lifespan's resources, as Annotated dependencies for routes."""

from typing import Annotated

import httpx2
from fastapi import Depends, Request

from app.readiness import ReadinessCheck
from app.settings import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


def get_http_client(request: Request) -> httpx2.AsyncClient:
    client: httpx2.AsyncClient = request.state.http_client
    return client


def get_readiness_checks(request: Request) -> list[ReadinessCheck]:
    checks: list[ReadinessCheck] = request.state.readiness_checks
    return checks


SettingsDep = Annotated[Settings, Depends(get_settings)]
HttpClientDep = Annotated[httpx2.AsyncClient, Depends(get_http_client)]
ReadinessChecksDep = Annotated[list[ReadinessCheck], Depends(get_readiness_checks)]
