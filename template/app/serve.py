"""The `serve` console script: starts the production server exactly as the container does."""

import sys

import uvicorn
from pydantic import ValidationError

from app.logs import logging_config
from app.settings import Settings, describe_error

# Above the 60 s idle timeout of common load balancers (AWS ALB), so the balancer, not the server,
# closes idle connections; the other way round clients see sporadic 502s.
KEEP_ALIVE_SECONDS = 75
# Inside Kubernetes' default 30 s termination grace period, leaving room for a preStop sleep.
GRACEFUL_SHUTDOWN_SECONDS = 20


def main() -> None:
    try:
        settings = Settings()
    except ValidationError as error:
        sys.exit(describe_error(error))
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.web_concurrency or 1,
        log_config=logging_config(settings.log_level),
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
