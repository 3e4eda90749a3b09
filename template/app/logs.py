"""Logging configuration for the server and the app: one format, level from LOG_LEVEL."""

from typing import Any


def logging_config(level: str) -> dict[str, Any]:
    """A logging.config.dictConfig document; the server applies it in every worker process."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            },
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        # The server's own loggers go through the root handler instead of keeping their own.
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": True},
        },
    }
