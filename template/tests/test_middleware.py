"""Request ids and Server-Timing: pure-ASGI middleware on every response, errors included."""

import json
import logging
import re

import httpx2
import pytest
from fastapi import FastAPI

from app.access_log import AccessLog
from app.logs import JsonFormatter, RequestIdFilter, TextFormatter
from app.main import create_app
from app.request_id import set_trace_id
from app.settings import Settings
from app.timing import current_stats

pytestmark = pytest.mark.anyio

# W3C Server-Timing: metric *( OWS ";" OWS param ), params dur=<number> or desc=<token|quoted>.
TCHAR = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
PARAM = rf"(dur=\d+(\.\d+)?|desc=({TCHAR}|\"[^\"\\]*\"))"
METRIC = rf"{TCHAR}(\s*;\s*{PARAM})*"
SERVER_TIMING = re.compile(rf"{METRIC}(\s*,\s*{METRIC})*")
# logging's default time format: "2026-12-03 13:14:49,068".
TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}")


@pytest.fixture
def app(app: FastAPI) -> FastAPI:
    async def reports_lower_layers() -> dict[str, str]:
        stats = current_stats()
        stats.db_queries, stats.db_seconds, stats.cache = 2, 0.0042, "miss"
        return {"ok": "yes"}

    app.add_api_route("/_test/stats", reports_lower_layers)
    return app


async def test_a_valid_inbound_request_id_is_echoed(client: httpx2.AsyncClient) -> None:
    response = await client.get("/livez", headers={"X-Request-ID": "abc-123.X:9_z"})

    assert response.headers["x-request-id"] == "abc-123.X:9_z"


@pytest.mark.parametrize("bad", ["has space", "x" * 129, 'quote"d', "semi;colon", ""])
async def test_an_invalid_request_id_is_replaced_not_echoed(
    client: httpx2.AsyncClient, bad: str
) -> None:
    response = await client.get("/livez", headers={"X-Request-ID": bad})

    assert response.headers["x-request-id"] != bad
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


async def test_every_request_gets_a_fresh_id(client: httpx2.AsyncClient) -> None:
    first = await client.get("/livez")
    second = await client.get("/livez")

    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_server_timing_has_app_duration_and_follows_the_grammar(
    client: httpx2.AsyncClient,
) -> None:
    header = (await client.get("/livez")).headers["server-timing"]

    assert SERVER_TIMING.fullmatch(header), header
    assert re.fullmatch(r"app;dur=\d+\.\d", header)


async def test_lower_layers_report_db_and_cache_through_the_stats_seam(
    client: httpx2.AsyncClient,
) -> None:
    header = (await client.get("/_test/stats")).headers["server-timing"]

    assert SERVER_TIMING.fullmatch(header), header
    metrics = [metric.strip() for metric in header.split(",")]
    assert metrics[0].startswith("app;dur=")
    assert metrics[1] == 'db;dur=4.2;desc="2 queries"'
    assert metrics[2] == "cache;desc=miss"


async def test_error_responses_carry_the_headers_too(client: httpx2.AsyncClient) -> None:
    response = await client.get("/no-such-route", headers={"X-Request-ID": "trace-me"})

    assert response.status_code == 404
    assert response.headers["x-request-id"] == "trace-me"
    assert SERVER_TIMING.fullmatch(response.headers["server-timing"])


async def test_the_access_line_goes_to_stdout_as_json_with_the_request_id(
    client: httpx2.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    await client.get("/livez", headers={"X-Request-ID": "log-me"})

    [line] = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    assert (line["logger"], line["level"]) == ("access", "info")
    assert line["message"] == "GET /livez 200"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/livez", 200)
    assert line["request_id"] == "log-me"
    assert line["duration_ms"] >= 0
    assert TIME.fullmatch(line["time"])


@pytest.mark.parametrize("formatter", [JsonFormatter, TextFormatter])
@pytest.mark.parametrize(
    ("path", "trace_id"),
    [
        ("/orders/7", None),
        # A path is the client's (percent-decoded): quotes, backslashes, control characters
        # and non-ASCII must come out escaped exactly as the formatter's encoder escapes them.
        ('/a"b\\c/\x01\u2028/é/\U0001f600', None),
        ("/orders/7", "4bf92f3577b34da6a3ce929d0e0e4736"),
    ],
)
def test_an_access_line_is_the_line_logging_would_write(
    formatter: type[logging.Formatter],
    path: str,
    trace_id: str | None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Written without logging (app.access_log), so a shipper must still get the same line: the
    # one the service's own formatters make of a record with the same fields.
    created = 1_796_300_000.042
    log_format = "json" if formatter is JsonFormatter else "text"
    token = set_trace_id(trace_id) if trace_id is not None else None
    try:
        AccessLog(log_format).write(created, "GET", path, 404, 0.01234)
        record = logging.makeLogRecord(
            {
                "name": "access",
                "levelno": logging.INFO,
                "levelname": "INFO",
                "msg": "%s %s %s",
                "args": ("GET", path, 404),
                "created": created,
                "method": "GET",
                "path": path,
                "status": 404,
                "duration_ms": 12.3,
            }
        )
        RequestIdFilter().filter(record)
    finally:
        if token is not None:
            token.var.reset(token)

    assert capsys.readouterr().out == formatter().format(record) + "\n"


async def test_slow_requests_are_logged_with_their_timing(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(Settings(environment="test", slow_request_ms=0, access_log=False))
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
        capsys.readouterr()
        await client.get("/livez")

    [record] = [r for r in caplog.records if r.getMessage() == "slow request"]
    assert record.levelname == "WARNING"
    assert record.__dict__["path"] == "/livez"
    assert record.__dict__["server_timing"].startswith("app;dur=")
    # ACCESS_LOG=false: no access line, though the slow-request warning is written.
    assert capsys.readouterr().out == ""
