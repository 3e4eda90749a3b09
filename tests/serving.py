"""A rendered project served for real in the template's tests: services, data, `uv run serve`.

`services_env` gives a project the throwaway PostgreSQL, MariaDB or Redis its answers need, and
`without_servers_env` hides every such server, as on a fresh machine;
`migrated_and_seeded` fills its database; `serving` runs `uv run serve`, exactly as the container
does, on a free loopback port, and stops it as Kubernetes would: SIGTERM to the top process (uv
passes it on), then SIGKILL to whatever of its session is left.
"""

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
import yaml

from tests.commands import UV, run
from tests.services import free_port

Popen = subprocess.Popen[bytes]

START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 60
POLL_SECONDS = 0.2
POSTGRES_DRIVERS = {"sqlalchemy-asyncpg", "asyncpg", "sqlalchemy-psycopg"}


def answers_of(project: Path) -> dict[str, str]:
    answers: dict[str, str] = yaml.safe_load((project / ".copier-answers.yml").read_text())
    return answers


def services_env(request: pytest.FixtureRequest, project: Path) -> dict[str, str]:
    """DATABASE_URL and REDIS_URL of real, throwaway servers, for projects that use them."""
    answers = answers_of(project)
    driver = answers["db_driver"]
    env = {}
    if driver in POSTGRES_DRIVERS:
        env["DATABASE_URL"] = request.getfixturevalue("postgres_server").url_for()
    elif driver == "sqlalchemy-asyncmy":
        env["DATABASE_URL"] = request.getfixturevalue("mariadb_server").url_for()
    if driver != "none" and (
        answers.get("cache") == "redis" or answers.get("queue", "none") != "none"
    ):
        env["REDIS_URL"] = request.getfixturevalue("redis_server").url
    return env


# What a fresh machine lacks: the database and Redis servers' programs and their clients
# (Debian's, which tests/services.py runs), PgBouncer and nginx.
SERVER_PROGRAMS = re.compile(
    r"(postgres|initdb|pg_\w+|psql|createdb|dropdb|redis-\w+|valkey-\w+|mariadb.*|mysql.*"
    r"|pgbouncer|nginx)"
)


def without_servers_env(directory: Path) -> dict[str, str]:
    """A PATH on which no database or Redis program is found, whatever this machine has: every
    other program of the current PATH, linked into `directory`. DATABASE_URL and REDIS_URL are
    unset already (tests/conftest.py), so a project falls back on its own local servers."""
    directory.mkdir(parents=True, exist_ok=True)
    for entry in os.environ["PATH"].split(os.pathsep):
        folder = Path(entry)
        if not folder.is_dir():
            continue
        for program in folder.iterdir():
            link = directory / program.name
            if SERVER_PROGRAMS.fullmatch(program.name) or link.exists():
                continue
            if program.is_file() and os.access(program, os.X_OK):
                link.symlink_to(program)
    return {"PATH": str(directory)}


def migrated_and_seeded(project: Path, env: Mapping[str, str], *, orders: int, items: int) -> None:
    """`alembic upgrade head`, then the project's own deterministic seed (order ids 1..orders)."""
    run([UV, "run", "alembic", "upgrade", "head"], project, env=env)
    seed = ["python", "-m", "app.seed", "--orders", str(orders), "--items-per-order", str(items)]
    run([UV, "run", *seed], project, env=env)


@dataclass(frozen=True)
class Served:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def started(script: str, project: Path, env: Mapping[str, str], log: Path, port: int) -> Popen:
    """`uv run <script>` in the project, told to listen on 127.0.0.1:port, its output in `log`."""
    # The metrics ports too are free and its own: tests run several services at once.
    full_env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "METRICS__PORT": str(free_port()),
        "METRICS__WORKER_PORT": str(free_port()),
        **env,
    }
    with log.open("wb") as output:
        return subprocess.Popen(
            [UV, "run", script],
            cwd=project,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            # Its own session: the teardown can reach every process it started.
            start_new_session=True,
        )


@contextlib.contextmanager
def serving(project: Path, env: Mapping[str, str], log: Path) -> Iterator[Served]:
    """`uv run serve` with these settings, once it answers /livez; stopped on the way out."""
    port = free_port()
    process = started("serve", project, env, log, port)
    served = Served(process, f"http://127.0.0.1:{port}", log)
    try:
        _wait_until_live(served)
        yield served
    finally:
        stop_session(process)


def stop_session(process: subprocess.Popen[bytes], first: signal.Signals = signal.SIGTERM) -> None:
    """Stop a process started in a session of its own as Kubernetes would: SIGTERM (or the
    program's own graceful signal) to it, then, after STOP_TIMEOUT_SECONDS or once it exited,
    SIGKILL to whatever of its session is left."""
    if process.poll() is None:
        process.send_signal(first)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _wait_until_live(served: Served) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        if served.process.poll() is not None:
            pytest.fail(f"serve exited with {served.process.returncode}:\n{served.log_text()}")
        if time.monotonic() > deadline:
            pytest.fail(
                f"serve did not answer within {START_TIMEOUT_SECONDS} s:\n{served.log_text()}"
            )
        try:
            httpx2.get(f"{served.base_url}/livez", timeout=1)
            return
        except httpx2.TransportError:
            time.sleep(POLL_SECONDS)
