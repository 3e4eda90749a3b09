"""The shipped dashboard and alert rules read only series that a live service and worker expose.

The default project (PostgreSQL, Redis cache, arq, Prometheus) runs as `uv run serve` and
`uv run worker` on a database of the test's own. A few requests give every labelled metric a
sample: an order read twice (a cache miss, then a hit), a page, a quote whose partners are down,
and a new order, which the worker confirms. Then both metrics ports are scraped, and every series
that deploy/monitoring/ names must be in a scrape under that exact name. Exact series names, not
metric names with suffixes stripped: a histogram's `_bucket` exists only if the metric is a
histogram, and `db_client_connection_count` is a gauge, not the `_count` of a histogram. A
dashboard panel reads the API's scrape job (`$job`) or the worker's (`$worker_job`), so each of its
series must be in that process's scrape.
"""

import asyncio
import contextlib
import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx2
import pytest
import yaml

from tests.commands import UV
from tests.conftest import Render
from tests.matrix import COMBINATIONS
from tests.services import Postgres, free_port
from tests.serving import answers_of, migrated_and_seeded, services_env, serving, stop_session

pytestmark = pytest.mark.slow

# The matrix's rendering of the defaults: synced once a run, shared with tests/test_generated.py.
DEFAULTS = next(
    answers for answers in COMBINATIONS if answers == {"db_driver": "sqlalchemy-asyncpg"}
)
ORDERS, ITEMS = 5, 2
START_TIMEOUT_SECONDS = 60
CONDITION_TIMEOUT_SECONDS = 60
POLL_SECONDS = 0.1
NEW_ORDER = {"customer_id": 1, "items": [{"sku": "MON-1", "quantity": 1, "unit_price_cents": 100}]}

# PromQL, as far as telling the series an expression selects goes.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\(?)")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def series_in(expression: str) -> set[str]:
    """The series names an expression selects (not its functions, keywords or label names)."""
    bare = _STRING.sub('""', expression)
    bare = _RANGE.sub("", _LABEL_LIST.sub("", _MATCHERS.sub("", bare)))
    return {
        name
        for name, call in _IDENTIFIER.findall(bare)
        if not call.strip() and name not in _KEYWORDS
    }


def scraped_series(text: str) -> set[str]:
    """The series names of a scrape in the Prometheus text format, as Prometheus stores them."""
    return {
        re.split(r"[{\s]", line, maxsplit=1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


@pytest.fixture
def own_database(postgres_server: Postgres) -> Iterator[str]:
    """A database of this test alone on the session's PostgreSQL: other tests reset app_test."""
    name = f"monitoring_{uuid.uuid4().hex[:12]}_test"

    async def execute(statement: str) -> None:
        connection = await asyncpg.connect(postgres_server.url_for())
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(execute(f"CREATE DATABASE {name}"))
    try:
        yield postgres_server.url_for().rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@contextlib.contextmanager
def working(project: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`uv run worker` with these settings; SIGTERM on the way out, then SIGKILL to what is left."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            [UV, "run", "worker"],
            cwd=project,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        stop_session(process)


def scrape_until(port: int, holds: Callable[[str], bool], logs: list[Path]) -> str:
    """GET /metrics on this port until `holds` is true of the text (bounded, not a speed claim)."""
    deadline = time.monotonic() + CONDITION_TIMEOUT_SECONDS
    text = ""
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx2.TransportError):
            response = httpx2.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
            response.raise_for_status()
            text = response.text
            if holds(text):
                return text
        time.sleep(POLL_SECONDS)
    shown = "\n".join(f"--- {log.name} ---\n{log.read_text(errors='replace')}" for log in logs)
    pytest.fail(f"port {port} never answered what was awaited; last scrape:\n{text}\n{shown}")


def monitoring_expressions(project: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """The dashboard's (expression, panel title) pairs, and the alert rules' expressions."""
    monitoring = project / "deploy" / "monitoring"
    dashboard: dict[str, Any] = json.loads((monitoring / "grafana-dashboard.json").read_text())
    rules: dict[str, Any] = yaml.safe_load((monitoring / "prometheus-alerts.yaml").read_text())
    panels = [
        (target["expr"], panel["title"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    alerts = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    return panels, alerts


def test_every_series_the_dashboard_and_alerts_read_is_in_a_live_scrape(
    request: pytest.FixtureRequest,
    render: Render,
    synced: Callable[[Path], Path],
    own_database: str,
    tmp_path: Path,
) -> None:
    project = synced(render(**DEFAULTS))
    answers = answers_of(project)
    assert (answers["metrics"], answers["queue"]) == ("prometheus", "arq")
    api_port, worker_port = free_port(), free_port()
    partners_down = f"http://127.0.0.1:{free_port()}"
    name = f"monitoring-{uuid.uuid4().hex[:12]}"
    env = {
        **services_env(request, project),
        "DATABASE_URL": own_database,
        "WEB_CONCURRENCY": "1",
        "METRICS__PORT": str(api_port),
        "METRICS__WORKER_PORT": str(worker_port),
        # Nothing listens there: the quote's partner calls end as outcome "error", a 502.
        "PARTNERS__SHIPPING_URL": partners_down,
        "PARTNERS__TAX_URL": partners_down,
        # Keys of their own in the session's Redis.
        "QUEUE__NAME": name,
        "CACHE__NAMESPACE": name,
    }
    migrated_and_seeded(project, env, orders=ORDERS, items=ITEMS)
    logs = [tmp_path / "serve.log", tmp_path / "worker.log"]

    with serving(project, env, logs[0]) as served, working(project, env, logs[1]):
        with httpx2.Client(base_url=served.base_url, timeout=30) as client:
            assert client.get("/orders/1").status_code == 200
            assert "cache;desc=hit" in client.get("/orders/1").headers["server-timing"]
            assert client.get("/orders", params={"limit": 2}).status_code == 200
            assert client.get("/orders/1/quote").status_code == 502
            assert client.post("/orders", json=NEW_ORDER).status_code == 201
        worker_text = scrape_until(
            worker_port,
            lambda text: 'queue_jobs_total{job_name="confirm_order",outcome="success"} 1.0' in text,
            logs,
        )
        api_text = scrape_until(
            api_port, lambda text: 'queue_enqueued_total{outcome="ok"} 1.0' in text, logs
        )

    api, worker = scraped_series(api_text), scraped_series(worker_text)
    panels, alerts = monitoring_expressions(project)
    missing = {}
    for expression, title in panels:
        # Each panel selects the API's scrape job or the worker's.
        scrape = worker if "$worker_job" in expression else api
        if absent := series_in(expression) - scrape:
            missing[title] = sorted(absent)
    for expression in alerts:
        if absent := series_in(expression) - (api | worker):
            missing[expression] = sorted(absent)
    named = {series for expression, _ in panels for series in series_in(expression)}
    assert len(named) > 10, named  # the parser found the series, not nothing
    assert not missing, missing
