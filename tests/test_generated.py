"""Generated projects pass their own gates: ruff, mypy --strict, their test suite, a real server."""

import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from tests.commands import UV, run
from tests.conftest import Render, choice_values
from tests.matrix import COMBINATIONS, LOCAL_SERVERS, combination_id
from tests.projects import SharedProjects
from tests.serving import services_env, serving, without_servers_env

pytestmark = pytest.mark.slow

START_TIMEOUT_SECONDS = 60
SERVERS = choice_values("server")

Synced = Callable[[Path], Path]


@dataclass(frozen=True)
class Project:
    path: Path
    env: dict[str, str]


@pytest.fixture(params=COMBINATIONS, ids=combination_id)
def project(
    request: pytest.FixtureRequest, render: Render, synced: Synced, tmp_path: Path
) -> Project:
    path = synced(render(**request.param))
    if request.param in LOCAL_SERVERS:
        return Project(path, without_servers_env(tmp_path / "bin"))
    return Project(path, services_env(request, path))


def test_the_local_server_suites_are_in_the_matrix() -> None:
    assert all(answers in COMBINATIONS for answers in LOCAL_SERVERS)


def test_every_python_version_runs_a_suite_with_servers_and_a_worker() -> None:
    """Each Python version's suites include one with a database and a worker (on Redis)."""
    default = choice_values("python_version")[0]

    def full_stack(answers: dict[str, str]) -> bool:
        driver = answers.get("db_driver", "sqlalchemy-asyncpg")
        return driver != "none" and answers.get("queue", "arq") != "none"

    for version in choice_values("python_version"):
        runs = [a for a in COMBINATIONS if a.get("python_version", default) == version]
        assert any(full_stack(answers) for answers in runs), version


def test_every_cache_and_queue_pair_runs_somewhere() -> None:
    pairs = {
        (answers.get("cache", "redis"), answers.get("queue", "arq"))
        for answers in COMBINATIONS
        if answers.get("db_driver") != "none"
    }

    expected = {
        (cache, queue) for cache in choice_values("cache") for queue in choice_values("queue")
    }
    assert pairs == expected


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


# A hang guard, not a speed limit. The largest suites (asyncpg with Celery: 260 tests, real Celery
# workers and servers) take about 2 minutes alone here; under CI's four parallel suites on two
# cores one ran past the old 600 s guard (2026-12-02): slowness or a hang, not yet told apart.
SUITE_TIMEOUT_SECONDS = 1500


def test_the_projects_own_suite_passes(project: Project) -> None:
    result = run(
        [UV, "run", "pytest", "-q", "-p", "no:cacheprovider"],
        project.path,
        env=project.env,
        timeout=SUITE_TIMEOUT_SECONDS,
    )

    assert " passed" in result.stdout
    assert " skipped" not in result.stdout


def test_the_project_runs_on_its_python_version(project: Project) -> None:
    version = (project.path / ".python-version").read_text().strip()
    result = run([UV, "run", "python", "-c", "import sys; print(sys.version)"], project.path)

    assert result.stdout.startswith(version + ".")


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
    with serving(project, {}, tmp_path / "serve.log") as served:
        response = httpx2.get(
            f"{served.base_url}/livez", headers={"X-Request-ID": "ci-1"}, timeout=10
        )

        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        assert response.headers["x-request-id"] == "ci-1"
        assert response.headers["server-timing"].startswith("app;dur=")
        assert f'"starting {server}"' in served.log_text()
        # As Kubernetes does: SIGTERM to the top process only (uv forwards it to the server);
        # signalling the whole group would hit the workers behind their supervisor's back.
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=START_TIMEOUT_SECONDS) == 0, served.log_text()
