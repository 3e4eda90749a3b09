"""Generated projects pass their own gates: ruff, mypy --strict, their test suite, a real server."""

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
import yaml

from tests.commands import UV, run
from tests.conftest import Render, choice_values
from tests.matrix import COMBINATIONS, combination_id
from tests.projects import SharedProjects

pytestmark = pytest.mark.slow

START_TIMEOUT_SECONDS = 60
SERVERS = choice_values("server")
POSTGRES_DRIVERS = {"sqlalchemy-asyncpg", "asyncpg", "sqlalchemy-psycopg"}

Synced = Callable[[Path], Path]


@dataclass(frozen=True)
class Project:
    path: Path
    env: dict[str, str]


def services_env(request: pytest.FixtureRequest, project: Path) -> dict[str, str]:
    """DATABASE_URL and REDIS_URL of real, throwaway servers, for projects that use them."""
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
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


@pytest.fixture(params=COMBINATIONS, ids=combination_id)
def project(request: pytest.FixtureRequest, render: Render, synced: Synced) -> Project:
    path = synced(render(**request.param))
    return Project(path, services_env(request, path))


def test_ruff_finds_nothing_to_fix(project: Project) -> None:
    run([UV, "run", "ruff", "check", "--no-fix"], project.path)
    run([UV, "run", "ruff", "format", "--check"], project.path)


def test_mypy_strict_passes(project: Project, shared_projects: SharedProjects) -> None:
    # One incremental cache for every rendering (mypy keeps one per Python version inside it):
    # the third-party modules, the same in every project, are analysed once a run instead of
    # once a project (11 s of CPU each). mypy checks each cached module against its source and
    # options, so a project's own modules are analysed again wherever they differ.
    cache = ["--cache-dir", str(shared_projects.mypy_cache)]
    run([UV, "run", "mypy", "--strict", *cache], project.path)


def test_the_projects_own_suite_passes(project: Project) -> None:
    result = run(
        [UV, "run", "pytest", "-q", "-p", "no:cacheprovider"], project.path, env=project.env
    )

    assert " passed" in result.stdout
    assert " skipped" not in result.stdout


def test_the_project_runs_on_its_python_version(project: Project) -> None:
    version = (project.path / ".python-version").read_text().strip()
    result = run([UV, "run", "python", "-c", "import sys; print(sys.version)"], project.path)

    assert result.stdout.startswith(version + ".")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("server", SERVERS)
def test_uv_run_serve_answers_livez(
    render: Render, synced: Synced, tmp_path: Path, server: str
) -> None:
    """The README's promise, literally: `uv run serve`, then GET /livez is 200, with headers."""
    # The same renderings as the matrix above, so nothing extra is synced.
    answers = next(
        combination
        for combination in COMBINATIONS
        if combination.get("server") == server and combination.get("json_encoder") == "orjson"
    )
    project = synced(render(**answers))
    port = free_port()
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port)}
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [UV, "run", "serve"],
            cwd=project,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            assert process.poll() is None, f"serve exited early:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"no answer in time:\n{log_path.read_text()}"
            try:
                response = httpx2.get(
                    f"http://127.0.0.1:{port}/livez", headers={"X-Request-ID": "ci-1"}, timeout=1
                )
                break
            except httpx2.TransportError:
                time.sleep(0.2)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        assert response.headers["x-request-id"] == "ci-1"
        assert response.headers["server-timing"].startswith("app;dur=")
        assert f'"starting {server}"' in log_path.read_text()
        # As Kubernetes does: SIGTERM to the top process only (uv forwards it to the server);
        # signalling the whole group would hit the workers behind their supervisor's back.
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=START_TIMEOUT_SECONDS) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
