"""Log lines: what callers pass with extra= is kept, uvicorn's colour-escaped copy is not."""

import json
import logging

import pytest

from app.logs import JsonFormatter, TextFormatter


def uvicorn_started() -> logging.LogRecord:
    """What uvicorn logs at start-up: the message, and a copy with ANSI colours for its own
    terminal formatter in `color_message`; plus an ordinary extra and the request id filter's."""
    return logging.makeLogRecord(
        {
            "name": "uvicorn.error",
            "levelname": "INFO",
            "msg": "Started server process [%d]",
            "args": (4242,),
            "color_message": "Started server process [\x1b[36m%d\x1b[0m]",
            "order_id": 7,
            "request_id": "-",
        }
    )


def test_a_json_line_drops_color_message_and_keeps_other_extras() -> None:
    line = json.loads(JsonFormatter().format(uvicorn_started()))

    assert "color_message" not in line
    assert line["message"] == "Started server process [4242]"
    assert line["order_id"] == 7


def test_a_text_line_drops_color_message_and_keeps_other_extras() -> None:
    line = TextFormatter().format(uvicorn_started())

    assert "color_message" not in line
    assert line.endswith("Started server process [4242] order_id=7")


@pytest.mark.parametrize("formatter", [JsonFormatter, TextFormatter])
def test_no_line_carries_an_ansi_escape(formatter: type[logging.Formatter]) -> None:
    line = formatter().format(uvicorn_started())

    assert "\x1b" not in line
    assert "\\u001b" not in line
