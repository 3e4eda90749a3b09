"""Metrics stay right across worker processes, under every server, as workers die and recycle.

Each test serves a rendered project with `uv run serve` and two workers, sends a known number of
requests, and reads GET /metrics from the metrics port: the count scraped must equal the count
sent, exactly, whichever worker served them; a worker killed with SIGKILL must not take its
counts with it; workers recycled after every request must not pile up files in the metrics
directory. A thousand dead processes are folded by the project's own code, run in the project.
Scrape times are printed for the record, never asserted.
"""

import json
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import pytest

from tests.commands import UV, run
from tests.conftest import Render, choice_values
from tests.matrix import sqlite_rendering
from tests.services import free_port
from tests.serving import Served, migrated_and_seeded, services_env, serving

pytestmark = pytest.mark.slow

ORDERS, ITEMS = 20, 3
ROUTE = "/orders/{order_id}"
CLIENT_THREADS = 8
CONDITION_TIMEOUT_SECONDS = 60
POLL_SECONDS = 0.05
# Files of one live worker: counters, histograms, live gauges.
FILES_PER_WORKER = 3
# The archives dead workers are folded into: counters and histograms.
ARCHIVES = 2


def _served_project(
    request: pytest.FixtureRequest,
    render: Render,
    synced: Callable[[Path], Path],
    tmp_path: Path,
    server: str,
    **settings: str,
) -> tuple[Path, dict[str, str], Path, int]:
    project = synced(render(**sqlite_rendering(server)))
    metrics_dir = tmp_path / "metrics"
    metrics_port = free_port()
    env = {
        **services_env(request, project),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'metrics.db'}",
        "WEB_CONCURRENCY": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "METRICS__PORT": str(metrics_port),
        # Access lines are not what these tests read.
        "ACCESS_LOG": "false",
        **settings,
    }
    migrated_and_seeded(project, env, orders=ORDERS, items=ITEMS)
    return project, env, metrics_dir, metrics_port


def _send(served: Served, count: int) -> None:
    """`count` GET /orders/{id}, each on a new connection so that every worker takes some."""

    def one(number: int) -> int:
        response = httpx2.get(f"{served.base_url}/orders/{number % ORDERS + 1}", timeout=30)
        return response.status_code

    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        statuses = list(pool.map(one, range(count)))
    assert statuses == [200] * count


def _scrape(port: int) -> tuple[str, float]:
    started = time.monotonic()
    response = httpx2.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
    response.raise_for_status()
    return response.text, time.monotonic() - started


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample, by name and a subset of its labels (0 when absent)."""
    total = 0.0
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    for line in text.splitlines():
        if line.startswith((f"{name}{{", f"{name} ")) and all(label in line for label in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _requests_counted(port: int) -> float:
    text, seconds = _scrape(port)
    print(f"scrape: {seconds * 1000:.1f} ms, {len(text)} bytes")
    return _sample(text, "http_server_request_duration_seconds_count", http_route=ROUTE)


def _counted_at_least(port: int, expected: int) -> None:
    """Wait until the scrape counts `expected` requests (the workers' next ticks), then hold it
    to exactly that: none lost, none counted twice."""
    _wait_for(f"{expected} requests counted", lambda: _requests_counted(port) >= expected)
    assert _requests_counted(port) == expected


def _worker_pids(metrics_dir: Path) -> set[int]:
    """Live processes with a histogram file: the workers (their loop-lag probe writes at once)."""
    pids = set()
    for file in metrics_dir.glob("histogram_*.db"):
        pid = file.stem.removeprefix("histogram_")
        if pid.isdigit() and _alive(int(pid)):
            pids.add(int(pid))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose: its parent has not reaped it yet.
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _get_across_a_recycle(url: str) -> httpx2.Response:
    """GET, sent once more when the connection closed before any response (CI saw it reset).

    A worker that just served its last request may still accept the next connection before it
    stops listening; exiting, uvicorn closes connections that have sent no request it has read,
    and the client gets a reset. RFC 9112 (9.3.1) lets a client resend an idempotent request then,
    as nginx does (proxy_next_upstream error). The count below still fails if a request the app
    served is ever sent twice: it must equal the requests made.
    """
    try:
        return httpx2.get(url, timeout=30)
    except (httpx2.ReadError, httpx2.RemoteProtocolError):
        return httpx2.get(url, timeout=30)


def _wait_for(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + CONDITION_TIMEOUT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(POLL_SECONDS)


@pytest.mark.parametrize("server", choice_values("server"))
def test_counts_add_up_across_workers_and_survive_a_killed_one(
    request: pytest.FixtureRequest,
    render: Render,
    synced: Callable[[Path], Path],
    tmp_path: Path,
    server: str,
) -> None:
    project, env, metrics_dir, port = _served_project(request, render, synced, tmp_path, server)

    with serving(project, env, tmp_path / "serve.log") as served:
        _wait_for("two workers", lambda: len(_worker_pids(metrics_dir)) == 2)
        _send(served, 200)
        # Each worker adds what it recorded at its probe's next tick (0.1 s). A worker killed
        # before that tick loses those samples, which is the documented price of recording
        # requests in memory; what it had added must survive it.
        _counted_at_least(port, 200)

        victim = min(_worker_pids(metrics_dir))
        os.kill(victim, signal.SIGKILL)
        # The server replaces it; the new worker's probe writes its files within its first tick.
        _wait_for(
            "a replacement worker",
            lambda: len(_worker_pids(metrics_dir)) == 2 and victim not in _worker_pids(metrics_dir),
        )
        assert _requests_counted(port) == 200, "a killed worker took its counts with it"
        # The scrape folded the dead worker's files into the archives.
        assert not list(metrics_dir.glob(f"*_{victim}.db"))

        _send(served, 50)
        _counted_at_least(port, 250)


# gunicorn only: granian has no max-requests setting, and uvicorn's supervisor replaces a worker
# that reached its limit only after SERVER__WORKER_TIMEOUT (30 s: its health-check ping waits that
# long on the exiting worker, measured on uvicorn 0.54, with or without metrics). A worker killed
# under uvicorn or granian leaves its files the same way, and the test above folds them.
def test_workers_recycled_after_every_request_leave_no_files_behind(
    request: pytest.FixtureRequest,
    render: Render,
    synced: Callable[[Path], Path],
    tmp_path: Path,
) -> None:
    server = "gunicorn"
    project, env, metrics_dir, port = _served_project(
        request,
        render,
        synced,
        tmp_path,
        server,
        SERVER__MAX_REQUESTS="1",
        SERVER__MAX_REQUESTS_JITTER="0",
    )
    recycles = 30
    most_files = 0

    with serving(project, env, tmp_path / "serve.log") as served:
        for number in range(recycles):
            response = _get_across_a_recycle(f"{served.base_url}/orders/{number % ORDERS + 1}")
            assert response.status_code == 200
            most_files = max(most_files, len(list(metrics_dir.glob("*.db"))))
        # The last worker to exit may not have been replaced yet: wait until two serve again.
        _wait_for("two workers", lambda: len(_worker_pids(metrics_dir)) == 2)
        # The last recycled worker adds its request at its final tick, as it shuts down: that
        # can come after its successor has started.
        _counted_at_least(port, recycles)
        files_after_scrape = len(list(metrics_dir.glob("*.db")))

    print(f"{server}: {recycles} recycles, at most {most_files} files, {files_after_scrape} after")
    # Without folding, every recycled worker would leave its 3 files: 90 here.
    assert most_files <= FILES_PER_WORKER * 4 + ARCHIVES
    assert files_after_scrape <= FILES_PER_WORKER * 2 + ARCHIVES


# Runs in the project: a thousand forked processes record through the project's own Metrics into
# one directory and exit; then its code folds them and serves a scrape.
THOUSAND_DEAD_WORKERS = """
import json, os, sys, time
from pathlib import Path

directory = Path(sys.argv[1])
directory.mkdir()
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
from app.observability import multiprocess
from app.observability.metrics import Metrics
from app.timing import RequestStats

scope = {"method": "GET", "route": None}
for _ in range(1000):
    pid = os.fork()
    if pid == 0:
        metrics = Metrics(None)
        metrics.request_started()
        metrics.request_finished(scope, 200, 0.01, RequestStats(cache="hit"))
        # What the worker's probe does at its next tick, and last at shutdown.
        metrics.flush()
        os._exit(0)
    os.waitpid(pid, 0)
files_before = len(list(directory.glob("*.db")))
started = time.monotonic()
folded = multiprocess.compact(directory)
fold_seconds = time.monotonic() - started
started = time.monotonic()
text = multiprocess.scrape(directory).decode()
scrape_seconds = time.monotonic() - started
print(json.dumps({
    "files_before": files_before,
    "folded": folded,
    "files_after": len(list(directory.glob("*.db"))),
    "fold_seconds": fold_seconds,
    "scrape_seconds": scrape_seconds,
    "scrape": text,
}))
"""


def test_a_thousand_dead_workers_fold_into_two_files(
    render: Render, synced: Callable[[Path], Path], tmp_path: Path
) -> None:
    project = synced(render(**sqlite_rendering("gunicorn")))

    result = run(
        [UV, "run", "python", "-c", THOUSAND_DEAD_WORKERS, str(tmp_path / "metrics")], project
    )

    outcome = json.loads(result.stdout)
    print(
        f"{outcome['files_before']} files folded in {outcome['fold_seconds']:.2f} s;"
        f" scrape {outcome['scrape_seconds'] * 1000:.1f} ms"
    )
    assert outcome["files_before"] >= 2000
    assert outcome["files_after"] == ARCHIVES
    text = outcome["scrape"]
    counted = _sample(text, "http_server_request_duration_seconds_count", http_route="unmatched")
    assert counted == 1000
    assert _sample(text, "cache_requests_total", result="hit") == 1000
    # Every one of them ended its request: nothing dead is still "in flight".
    assert _sample(text, "http_server_active_requests") == 0
