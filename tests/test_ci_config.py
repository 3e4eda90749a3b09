"""The generated project's own CI: valid for its platform, and running what the project claims.

Each rendering's workflow is validated offline against the schema its platform publishes
(check-jsonschema's vendored copies), then held to the project it sits in: the service containers
are exactly the servers its answers need, DATABASE_URL reaches the database service as the
credentials the service sets up, the commands are the README's quality gates, the Python is the
project's, and the image is built from its Dockerfile. No runner is started here: GitHub and
GitLab cannot run on this machine, so this is as far as a test of a CI file goes offline.
"""

import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.commands import run
from tests.conftest import Render
from tests.matrix import SWITCH_BASE

CHECK_JSONSCHEMA = str(Path(sys.executable).with_name("check-jsonschema"))
GITHUB = Path(".github/workflows/ci.yml")
GITLAB = Path(".gitlab-ci.yml")
SCHEMA_ARGS = {
    GITHUB: ["--builtin-schema", "vendor.github-workflows"],
    # GitLab's schema needs its !reference tags read and its regexes in non-unicode mode.
    GITLAB: [
        "--builtin-schema",
        "vendor.gitlab-ci",
        "--data-transform",
        "gitlab-ci",
        "--regex-variant",
        "nonunicode",
    ],
}
POSTGRES_DRIVERS = {"sqlalchemy-asyncpg", "asyncpg", "sqlalchemy-psycopg"}

# Each platform with a PostgreSQL and a MariaDB project (each with Redis), one that needs no
# server (SQLite, memory cache, no queue) and one without a database. The answer sets the matrix
# renders anyway are reused; the GitLab ones with servers are rendered here (no sync needed).
RENDERINGS = [
    {},
    {"db_driver": "sqlalchemy-asyncmy", "queue": "celery"},
    {"db_driver": "none"},
    {"ci": "gitlab"},
    {"ci": "gitlab", "db_driver": "sqlalchemy-asyncmy", "queue": "celery"},
    {**SWITCH_BASE, "ci": "gitlab"},
]


def _id(answers: dict[str, str]) -> str:
    return "-".join(f"{key}={value}" for key, value in answers.items()) or "defaults"


def _answers(project: Path) -> dict[str, str]:
    answers: dict[str, str] = yaml.safe_load((project / ".copier-answers.yml").read_text())
    return answers


def _ci_file(project: Path) -> Path:
    platform = _answers(project)["ci"]
    return project / (GITHUB if platform == "github" else GITLAB)


def _config(project: Path) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(_ci_file(project).read_text())
    return config


def _check_job(project: Path) -> dict[str, Any]:
    config = _config(project)
    job: dict[str, Any] = config["jobs"]["checks"] if "jobs" in config else config["checks"]
    return job


def _services_and_env(project: Path) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Service image (without tag) -> its environment, and the test job's environment."""
    job = _check_job(project)
    if "steps" in job:  # GitHub: a map of named services, each with its own env.
        services = {
            spec["image"].split(":")[0]: {k: str(v) for k, v in spec.get("env", {}).items()}
            for spec in job.get("services", {}).values()
        }
        return services, {k: str(v) for k, v in job.get("env", {}).items()}
    # GitLab: services share the job's variables.
    variables = {k: str(v) for k, v in job.get("variables", {}).items()}
    services = {spec["name"].split(":")[0]: variables for spec in job.get("services", [])}
    return services, variables


def _commands(project: Path) -> list[str]:
    job = _check_job(project)
    if "steps" in job:
        return [step["run"] for step in job["steps"] if "run" in step]
    return [str(line) for line in job["script"]]


def _expected_services(answers: dict[str, str]) -> set[str]:
    driver = answers.get("db_driver", "sqlalchemy-asyncpg")
    expected = set()
    if driver in POSTGRES_DRIVERS:
        expected.add("postgres")
    elif driver == "sqlalchemy-asyncmy":
        expected.add("mariadb")
    if driver != "none" and (
        answers.get("cache", "redis") == "redis" or answers.get("queue", "arq") != "none"
    ):
        expected.add("redis")
    return expected


@pytest.fixture(params=RENDERINGS, ids=[_id(answers) for answers in RENDERINGS])
def project(request: pytest.FixtureRequest, render: Render) -> Path:
    answers: dict[str, str] = request.param
    return render(**answers)


def test_the_ci_file_is_valid_for_its_platform(project: Path) -> None:
    ci_file = _ci_file(project)
    schema = SCHEMA_ARGS[ci_file.relative_to(project)]

    result = run([CHECK_JSONSCHEMA, *schema, str(ci_file)], project, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
    other = GITLAB if ci_file.relative_to(project) == GITHUB else GITHUB
    assert not (project / other).exists()


def test_the_services_are_exactly_the_servers_the_answers_need(project: Path) -> None:
    services, _ = _services_and_env(project)

    assert set(services) == _expected_services(_answers(project))


def test_database_url_reaches_the_database_service_as_it_is_set_up(project: Path) -> None:
    services, env = _services_and_env(project)
    github = _ci_file(project).name == "ci.yml"
    if "postgres" in services:
        service_env = services["postgres"]
        user, password = service_env["POSTGRES_USER"], service_env["POSTGRES_PASSWORD"]
        database, port, host = service_env["POSTGRES_DB"], 5432, "postgres"
    elif "mariadb" in services:
        service_env = services["mariadb"]
        user, password = service_env["MARIADB_USER"], service_env["MARIADB_PASSWORD"]
        database, port, host = service_env["MARIADB_DATABASE"], 3306, "mariadb"
    else:
        # No database server: SQLite makes its own file per session, or there is no database.
        assert "DATABASE_URL" not in env
        return

    url = urlsplit(env["DATABASE_URL"])
    # GitHub publishes service ports on the runner's loopback; GitLab reaches them by alias.
    assert url.hostname == ("127.0.0.1" if github else host)
    assert (url.port, url.username, url.password) == (port, user, password)
    # The suite drops every table and refuses a database whose name lacks "test".
    assert url.path.lstrip("/") == database
    assert "test" in database
    if "redis" in services:
        redis = urlsplit(env["REDIS_URL"])
        assert (redis.hostname, redis.port) == ("127.0.0.1" if github else "redis", 6379)


def test_ci_runs_the_quality_gates_the_readme_names(project: Path) -> None:
    readme = (project / "README.md").read_text()
    section = readme.split("## Quality gates", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    gates = [
        command.strip()
        for line in block.splitlines()
        for command in line.split("#", 1)[0].split("&&")
        if command.strip()
    ]
    commands = _commands(project)

    assert gates, "README's Quality gates block names no command"
    for gate in gates:
        assert any(command.startswith(gate) for command in commands), (gate, commands)
    # Dependencies exactly as uv.lock pins them, and the lock current with pyproject.toml.
    assert commands[0] == "uv sync --locked"


def test_ci_uses_the_projects_python_and_builds_its_image(project: Path) -> None:
    python = (project / ".python-version").read_text().strip()
    dockerfile = (project / "Dockerfile").read_text()

    assert f"ARG PYTHON_VERSION={python}\n" in dockerfile
    if _ci_file(project).name == "ci.yml":
        # setup-uv without a python-version of its own: uv reads .python-version.
        setup_uv = [
            step
            for step in _check_job(project)["steps"]
            if step.get("uses", "").startswith("astral-sh/setup-uv@")
        ]
        assert len(setup_uv) == 1
        assert "python-version" not in setup_uv[0].get("with", {})
        image_steps = [
            step
            for step in _config(project)["jobs"]["image"]["steps"]
            if step.get("uses", "").startswith("docker/build-push-action@")
        ]
        assert [step["with"]["context"] for step in image_steps] == ["."]
        assert image_steps[0]["with"]["push"] is False
    else:
        uv_image = _check_job(project)["image"]
        assert re.fullmatch(
            rf"ghcr\.io/astral-sh/uv:[\d.]+-python{re.escape(python)}-\S+", uv_image
        )
        assert any(
            command.startswith("docker build ") and command.endswith(" .")
            for command in _config(project)["build-image"]["script"]
        )


def test_ci_none_ships_no_ci_file(render: Render) -> None:
    project = render(ci="none", db_driver="none")

    assert not (project / GITHUB).exists()
    assert not (project / ".github").exists()
    assert not (project / GITLAB).exists()
