"""Opens what the service holds for its whole life, yields it as typed state, then closes it."""

import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import TypedDict

import httpx2
from anyio import to_thread
from fastapi import FastAPI

from app.http_client import outbound_client
from app.readiness import ReadinessCheck
from app.settings import Settings

log = logging.getLogger(__name__)


class State(TypedDict):
    """What every request sees as request.state (a shallow copy per request)."""

    settings: Settings
    http_client: httpx2.AsyncClient
    # Each resource opened below registers how /readyz probes it.
    readiness_checks: list[ReadinessCheck]


def lifespan_for(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[State]]:
    """The lifespan of an app built from these settings."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[State]:
        # The limiter is per event loop, so it is sized here, inside the server's loop.
        to_thread.current_default_thread_limiter().total_tokens = settings.max_threads
        readiness_checks: list[ReadinessCheck] = []
        async with AsyncExitStack() as stack:
            http_client = await stack.enter_async_context(outbound_client(settings.http))
            log.info("startup complete", extra={"pid": os.getpid()})
            yield {
                "settings": settings,
                "http_client": http_client,
                "readiness_checks": readiness_checks,
            }
        log.info("shutdown complete: shared resources closed", extra={"pid": os.getpid()})

    return lifespan
