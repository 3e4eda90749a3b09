"""An app factory for the server tests: the real app plus a slow route that is never shipped."""

import asyncio
import logging

from fastapi import FastAPI

from app.main import create_app

log = logging.getLogger(__name__)


def create_slow_app() -> FastAPI:
    app = create_app()

    async def slow(seconds: float) -> dict[str, float]:
        log.warning("slow request started")
        await asyncio.sleep(seconds)
        return {"slept": seconds}

    app.add_api_route("/_test/slow", slow)
    return app
