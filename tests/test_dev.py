"""`uv run dev` on a machine with nothing installed: orders served minutes after `copier copy`.

The generated README's first promise: in a new project, with no DATABASE_URL, no REDIS_URL and no
database or Redis program on PATH, `uv run dev` starts PostgreSQL and Valkey from the dev group's
wheels, migrates, seeds, runs the worker beside a reloading server, stops all of it on Ctrl-C,
and finds the same data on the next start.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.commands import UV, run
from tests.conftest import Render
from tests.matrix import COMBINATIONS, LOCAL_SERVERS
from tests.services import free_port
from tests.serving import started, without_servers_env

pytestmark = pytest.mark.slow

# A first start runs initdb, the migrations and the seed: seconds here, a minute is the promise.
START_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 60.0
POLL_SECONDS = 0.2
LOCAL_URL = re.compile(r"^dev: (PostgreSQL|Valkey) at \w+://[^@/]*@?127\.0\.0\.1:(\d+)/", re.M)
# What other tests create in the shared project as they run (a copy must not catch half of it).
IGNORED = shutil.ignore_patterns(".venv", "__pycache__", "*_cache", ".dev")
NEW_ORDER = {"customer_id": 1, "items": [{"sku": "DEV-1", "quantity": 2, "unit_price_cents": 150}]}


class Dev:
    """One `uv run dev` in its own session (as a terminal runs it), its output in a file."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path, base_url: str) -> None:
        self.process = process
        self.log = log
        self.base_url = base_url

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def ports(self) -> dict[str, int]:
        """The loopback ports of the local servers it said it started."""
        return {name: int(port) for name, port in LOCAL_URL.findall(self.log_text())}

    def get_until(self, path: str, done: Callable[[httpx2.Response], bool]) -> httpx2.Response:
        """GET path until `done(response)` holds; fails if dev exits or the deadline passes."""
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"dev exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                response = httpx2.get(f"{self.base_url}{path}", timeout=10)
                if done(response):
                    return response
            except httpx2.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"GET {path} not done in {START_TIMEOUT_SECONDS} s:\n{self.log_text()}")
            time.sleep(POLL_SECONDS)


def confirmed(response: httpx2.Response) -> bool:
    return response.status_code == 200 and response.json()["status"] == "confirmed"


@contextmanager
def dev(project: Path, env: Mapping[str, str], log: Path) -> Iterator[Dev]:
    """`uv run dev`, stopped as Ctrl-C in its terminal stops it: SIGINT to its process group."""
    port = free_port()
    process = started("dev", project, env, log, port)
    running = Dev(process, log, f"http://127.0.0.1:{port}")
    try:
        yield running
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def new_project(render: Render, tmp_path: Path) -> Iterator[Path]:
    """The default project (the matrix renders and syncs it anyway), copied without its venv:
    dev's data folder must not appear in a project other tests share."""
    project = tmp_path / "service"
    shutil.copytree(render(**LOCAL_SERVERS[0]), project, ignore=IGNORED)
    run([UV, "sync", "--quiet"], project)
    yield project
    # Under root the cluster lives outside the project (app.local_postgres), linked from it.
    postgres = project / ".dev" / "postgres"
    if postgres.is_symlink():
        shutil.rmtree(postgres.resolve())


def test_uv_run_dev_serves_orders_with_nothing_installed(new_project: Path, tmp_path: Path) -> None:
    env = without_servers_env(tmp_path / "bin")
    log = tmp_path / "dev.log"

    with dev(new_project, env, log) as first:
        order = first.get_until("/orders/1", lambda r: r.status_code == 200).json()
        assert order["id"] == 1
        assert order["items"]
        created = httpx2.post(f"{first.base_url}/orders", json=NEW_ORDER, timeout=10)
        assert created.status_code == 201, created.text
        new_id = created.json()["id"]
        # Confirmed by the worker that dev runs beside the server.
        first.get_until(f"/orders/{new_id}", confirmed)
        ports = first.ports()
        assert set(ports) == {"PostgreSQL", "Valkey"}, first.log_text()
    assert first.process.returncode == 0, first.log_text()
    assert "seeded orders" in first.log_text()
    assert "Traceback" not in first.log_text()
    # Ctrl-C stopped the servers too, after the app and the worker were done with them.
    assert all(refused(port) for port in ports.values()), first.log_text()

    with dev(new_project, env, tmp_path / "dev-again.log") as second:
        # The same data: the order made in the first run, which a second seed would have deleted.
        again = second.get_until(f"/orders/{new_id}", lambda r: r.status_code == 200).json()
        assert again["status"] == "confirmed"
    assert second.process.returncode == 0, second.log_text()
    assert "seeded orders" not in second.log_text()

    run(["git", "init", "--quiet"], new_project)
    ignored = run(["git", "check-ignore", ".dev/postgres", ".dev/redis"], new_project)
    assert ignored.stdout.split() == [".dev/postgres", ".dev/redis"]


def test_uv_run_dev_says_what_a_mariadb_project_needs(
    render: Render, synced: Any, tmp_path: Path
) -> None:
    answers = next(a for a in COMBINATIONS if a.get("db_driver") == "sqlalchemy-asyncmy")
    project = synced(render(**answers))
    result = run(
        [UV, "run", "dev"], project, env=without_servers_env(tmp_path / "bin"), check=False
    )

    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "dev: DATABASE_URL is not set, and MariaDB/MySQL has no local server here:"
        " `docker compose up -d db`, then DATABASE_URL=mysql://app:change-me@127.0.0.1:3306/app"
    )
