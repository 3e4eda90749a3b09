"""Logging: app logs on stderr, JSON or text, with the request id (access lines: app.access_log)."""

import json
import logging
import time
from typing import Any

from app.request_id import current_request_id, current_trace_id

# Attributes every LogRecord has; anything else was passed with `extra=` and belongs in the line,
# except uvicorn's color_message: its message again, with ANSI colour escapes, for its own
# terminal formatter. In a line it repeats the message, and in JSON shows as \u001b[36m noise.
_NOT_EXTRAS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


class RequestIdFilter(logging.Filter):
    """Stamps each record with the id of the request being served ("-" outside requests), and
    with the trace id when the request or job is traced."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id()
        trace_id = current_trace_id()
        if trace_id is not None:
            record.trace_id = trace_id
        return True


# Built once: json.dumps with any option builds a new encoder for every line.
encode_line = json.JSONEncoder(default=str).encode

# The date and time up to the second, formatted once a second: the access log writes a line per
# request, and strftime was a fifth of what formatting one cost. One tuple, replaced whole, so a
# thread logging at the same time never pairs a second with another second's text.
_second: tuple[int, str] = (-1, "")


def line_time(created: float) -> str:
    """logging's default time format ("2026-12-03 13:14:49,068", local time) of a timestamp."""
    global _second
    second, text = _second
    if int(created) != second:
        second = int(created)
        text = time.strftime(logging.Formatter.default_time_format, time.localtime(second))
        _second = (second, text)
    return f"{text},{int((created - second) * 1000):03d}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: the fields log shippers index, plus everything passed in extra."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": line_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _NOT_EXTRAS})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return encode_line(line)


class TextFormatter(logging.Formatter):
    """Human-readable lines for a terminal, extras appended as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return line_time(record.created) if datefmt is None else super().formatTime(record, datefmt)

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={v}" for k, v in vars(record).items() if k not in _NOT_EXTRAS | {"request_id"}
        )
        text = super().format(record)
        return f"{text} {extras}" if extras else text


def logging_config(level: str, log_format: str) -> dict[str, Any]:
    """A logging.config.dictConfig document; the server applies it in every worker process."""
    formatter = {"()": JsonFormatter if log_format == "json" else TextFormatter}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"ids": {"()": RequestIdFilter}},
        "formatters": {"line": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "line",
                "filters": ["ids"],
                "stream": "ext://sys.stderr",
            },
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            # Server loggers use the same handlers as the app. gunicorn's uvicorn worker copies the
            # handlers of gunicorn.error onto uvicorn.error, so that one needs its own handler.
            "gunicorn.error": {"handlers": ["stderr"], "propagate": False},
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},
            "granian": {"handlers": [], "propagate": True},
            "granian.access": {"handlers": [], "propagate": False},
        },
    }
