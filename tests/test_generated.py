"""Generated projects pass their own gates: ruff, mypy --strict, their test suite, a real server."""

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

from tests.conftest import UV, Render, questions, run

pytestmark = pytest.mark.slow

PYTHON_VERSIONS = questions()["python_version"]["choices"]
START_TIMEOUT_SECONDS = 60

Synced = Callable[[Path], Path]


@pytest.fixture(params=PYTHON_VERSIONS, ids=lambda version: f"py{version}")
def project(request: pytest.FixtureRequest, render: Render, synced: Synced) -> Path:
    return synced(render(python_version=request.param))


def test_ruff_finds_nothing_to_fix(project: Path) -> None:
    run([UV, "run", "ruff", "check", "--no-fix"], project)
    run([UV, "run", "ruff", "format", "--check"], project)


def test_mypy_strict_passes(project: Path) -> None:
    run([UV, "run", "mypy", "--strict"], project)


def test_the_projects_own_suite_passes(project: Path) -> None:
    result = run([UV, "run", "pytest", "-q", "-p", "no:cacheprovider"], project)

    assert " passed" in result.stdout
    assert " skipped" not in result.stdout


def test_the_project_runs_on_its_python_version(project: Path) -> None:
    version = (project / ".python-version").read_text().strip()
    result = run([UV, "run", "python", "-c", "import sys; print(sys.version)"], project)

    assert result.stdout.startswith(version + ".")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_uv_run_serve_answers_livez(render: Render, synced: Synced, tmp_path: Path) -> None:
    """The README's promise, literally: `uv run serve`, then GET /livez is 200."""
    project = synced(render())
    port = free_port()
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port)}
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
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
            assert server.poll() is None, f"serve exited early:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"no answer in time:\n{log_path.read_text()}"
            try:
                response = httpx2.get(f"http://127.0.0.1:{port}/livez", timeout=1)
                break
            except httpx2.TransportError:
                time.sleep(0.2)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=START_TIMEOUT_SECONDS)
