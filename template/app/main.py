"""Builds the FastAPI application: routers, middleware and handlers, wired from settings."""

from fastapi import FastAPI

from app import health
from app.lifespan import lifespan_for
from app.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application factory; servers call it in each worker (nothing is built at import)."""
    settings = settings or Settings()
    app = FastAPI(title=settings.service_name, lifespan=lifespan_for(settings))
    app.include_router(health.router)
    return app
