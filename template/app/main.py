"""Builds the FastAPI application: routers, middleware and handlers, wired from settings."""

from fastapi import FastAPI
from starlette.middleware import Middleware

from app import health
from app.errors import CrashMiddleware, add_exception_handlers
from app.lifespan import lifespan_for
from app.request_id import RequestIdMiddleware
from app.settings import Settings
from app.timing import TimingMiddleware


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application factory; servers call it in each worker (nothing is built at import)."""
    settings = settings or Settings()
    # Outermost first. All pure ASGI (BaseHTTPMiddleware would cost throughput and break
    # contextvars): the request id wraps everything so every response and log line carries it;
    # timing wraps the crash handler so 500s are timed and logged like any other response.
    middleware = [
        Middleware(RequestIdMiddleware),
        Middleware(
            TimingMiddleware,
            access_log=settings.access_log,
            slow_request_ms=settings.slow_request_ms,
        ),
        Middleware(CrashMiddleware),
    ]
    app = FastAPI(
        title=settings.service_name, lifespan=lifespan_for(settings), middleware=middleware
    )
    add_exception_handlers(app)
    app.include_router(health.router)
    return app
