"""Rendering: the template makes a clean, consistent project from its answers, with no --trust."""

import re
import shlex
import tomllib
from pathlib import Path

import copier
import pytest
import yaml

from tests.commands import REPO
from tests.conftest import Render, choice_values, questions

PYTHON_VERSIONS = choice_values("python_version")
JINJA_LEFTOVER = re.compile(r"\{\{|\{%|\{#|\.jinja\b")
UNREAD_DIRS = {".git", ".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__"}
# deploy/monitoring/ holds Go templates of its own, copied as they are: Prometheus alert
# annotations ({{ $value | humanize }}) and Grafana legends ({{http_route}}). Only those are
# allowed there; anything else in braces is still a Jinja leftover.
GO_TEMPLATE_DIR = Path("deploy/monitoring")
GO_TEMPLATE = re.compile(r"\{\{ \$[\w.]+(?: \| \w+)? \}\}|\{\{\w+\}\}")
# GitHub Actions expressions (${{ github.ref }}) in the generated workflow, kept in {% raw %}.
GITHUB_WORKFLOWS_DIR = Path(".github/workflows")
GITHUB_EXPRESSION = re.compile(r"\$\{\{ [\w.]+ \}\}")


def unrendered_text(project: Path, path: Path) -> str:
    """A file's text less what is meant to stay in braces (see GO_TEMPLATE)."""
    text = path.read_text()
    if path.relative_to(project).parent == GO_TEMPLATE_DIR:
        return GO_TEMPLATE.sub("", text)
    if path.relative_to(project).parent == GITHUB_WORKFLOWS_DIR:
        return GITHUB_EXPRESSION.sub("", text)
    return text


def project_files(project: Path) -> list[Path]:
    return [
        path
        for path in project.rglob("*")
        if path.is_file() and not UNREAD_DIRS.intersection(path.relative_to(project).parts)
    ]


def test_every_question_has_a_help_text_and_a_default() -> None:
    for name, spec in questions().items():
        assert spec.get("help"), f"{name} has no help text"
        assert "default" in spec, f"{name} has no default: `copier update --defaults` would break"


def test_copier_yml_needs_no_trust() -> None:
    config = yaml.safe_load((REPO / "copier.yml").read_text())

    assert not {"_tasks", "_jinja_extensions", "_migrations"} & config.keys()


def test_the_defaults_render_without_leftover_jinja(render: Render) -> None:
    project = render()
    files = project_files(project)

    assert {"pyproject.toml", "README.md", "Dockerfile", ".python-version"} <= {
        path.name for path in files
    }
    assert not [path for path in files if path.suffix == ".jinja"]
    leftovers = [
        f"{path.relative_to(project)}: {match.group()}"
        for path in files
        for match in [JINJA_LEFTOVER.search(unrendered_text(project, path))]
        if match
    ]
    assert not leftovers


def test_answers_file_records_the_template_version(render: Render) -> None:
    answers = yaml.safe_load((render() / ".copier-answers.yml").read_text())

    assert answers["_commit"]
    assert Path(answers["_src_path"]) == REPO
    assert answers["project_slug"] == "my-service"


def test_answers_reach_the_project_metadata(render: Render) -> None:
    project = render(
        project_name="Orders API",
        description='Orders, with "quotes" and a backslash \\',
        author_email="team@example.org",
    )
    metadata = tomllib.loads((project / "pyproject.toml").read_text())["project"]

    assert metadata["name"] == "orders-api"
    assert metadata["description"] == 'Orders, with "quotes" and a backslash \\'
    assert metadata["authors"] == [{"name": "Your Name", "email": "team@example.org"}]
    assert 'service_name: str = "Orders API"' in (project / "app" / "settings.py").read_text()
    assert "docker build -t orders-api ." in (project / "README.md").read_text()


@pytest.mark.parametrize("version", PYTHON_VERSIONS)
def test_python_version_agrees_across_config_files(render: Render, version: str) -> None:
    project = render(python_version=version)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())

    assert (project / ".python-version").read_text().strip() == version
    assert pyproject["project"]["requires-python"] == f">={version}"
    assert pyproject["tool"]["mypy"]["python_version"] == version
    assert pyproject["tool"]["ruff"]["target-version"] == "py" + version.replace(".", "")
    assert f"ARG PYTHON_VERSION={version}\n" in (project / "Dockerfile").read_text()


def test_dockerfile_runs_serve_in_exec_form_as_non_root(render: Render) -> None:
    project = render()
    dockerfile = (project / "Dockerfile").read_text()
    scripts = tomllib.loads((project / "pyproject.toml").read_text())["project"]["scripts"]

    assert 'CMD ["serve"]' in dockerfile
    assert scripts["serve"] == "app.serve:main"
    assert "--locked" in dockerfile
    assert {".venv", ".env", ".git"} <= set((project / ".dockerignore").read_text().split())


# The user is checked by every answer that changes the runtime stage: a database (migrations in
# /srv), SQLite (a data directory of the app's own), none; and gunicorn's heartbeat files.
@pytest.mark.parametrize(
    "answers", [{}, {"db_driver": "sqlalchemy-aiosqlite"}, {"db_driver": "none"}], ids=str
)
def test_the_image_runs_as_a_numeric_non_root_user_and_writes_nothing(
    render: Render, answers: dict[str, str]
) -> None:
    project = render(**answers)
    build, runtime = (project / "Dockerfile").read_text().split(" AS runtime\n")
    users = re.findall(r"^USER (\S+)$", runtime, re.MULTILINE)

    # Numeric, or Kubernetes' runAsNonRoot cannot tell that it is not root.
    assert len(users) == 1
    uid, _, gid = users[0].partition(":")
    assert re.fullmatch(r"[1-9][0-9]*", uid)
    assert re.fullmatch(r"[1-9][0-9]*", gid)
    assert f"--uid {uid} " in runtime
    assert f"--gid {gid} " in runtime
    # The code is root's (no --chown), bytecode compiled at build time, none written at run time.
    assert "--chown" not in runtime
    assert "UV_COMPILE_BYTECODE=1" in build
    assert "PYTHONDONTWRITEBYTECODE=1" in runtime
    gunicorn_conf = (project / "app" / "gunicorn_conf.py").read_text()
    assert '"worker_tmp_dir": "/dev/shm"' in gunicorn_conf
    if answers.get("db_driver") == "sqlalchemy-aiosqlite":
        # The only place the app writes: its database's volume, whose mount point it owns.
        compose = yaml.safe_load((project / "compose.yaml").read_text())["services"]["app"]
        assert compose["environment"]["DATABASE_URL"].startswith("sqlite:////data/")
        assert "app-data:/data" in compose["volumes"]
        assert "install --directory --owner=app --group=app /data\n" in runtime


def test_pre_commit_audits_the_locked_dependencies_and_fails_closed(render: Render) -> None:
    project = render()
    config = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    audit = hooks["pip-audit"]
    shell, flag, script = shlex.split(audit["entry"])

    assert (shell, flag) == ("sh", "-c")
    assert all(re.search(audit["files"], name) for name in ["uv.lock", "pyproject.toml"])
    assert not re.search(audit["files"], "app/main.py")
    assert audit["pass_filenames"] is False
    # What uv.lock pins, by a pinned pip-audit that fails on a package it cannot look up.
    assert script.startswith("uv export --frozen ")
    assert re.search(r"\| uvx pip-audit@\d+\.\d+\.\d+ --strict ", script)
    assert "pre-commit run pip-audit --all-files" in (project / "README.md").read_text()


def test_copy_works_without_trust(tmp_path: Path) -> None:
    destination = tmp_path / "service"

    copier.run_copy(str(REPO), destination, defaults=True, unsafe=False, vcs_ref="HEAD", quiet=True)

    assert (destination / ".copier-answers.yml").is_file()
    assert (destination / "app" / "main.py").is_file()


@pytest.mark.parametrize(
    ("answers", "named"),
    [
        ({"project_slug": "Not A Slug"}, "project_slug"),
        ({"project_slug": "orders--api"}, "project_slug"),
        ({"author_email": "nobody"}, "author_email"),
        ({"python_version": "3.10"}, "python_version"),
        ({"project_name": "  "}, "project_name"),
    ],
)
def test_a_bad_answer_is_refused_naming_the_question(
    tmp_path: Path, answers: dict[str, str], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        copier.run_copy(
            str(REPO), tmp_path / "service", data=answers, defaults=True, vcs_ref="HEAD", quiet=True
        )

    assert not (tmp_path / "service").exists()


def dependency_names(project: Path) -> set[str]:
    dependencies = tomllib.loads((project / "pyproject.toml").read_text())["project"][
        "dependencies"
    ]
    return {re.split(r"[\[<>=;! ]", dependency, maxsplit=1)[0] for dependency in dependencies}


@pytest.mark.parametrize("server", choice_values("server"))
def test_only_the_chosen_server_is_wired(render: Render, server: str) -> None:
    project = render(server=server)
    names = dependency_names(project)

    assert {path.name for path in (project / "app").glob("*_conf.py")} == {f"{server}_conf.py"}
    assert (
        f"from app import {server}_conf as server\n" in (project / "app" / "serve.py").read_text()
    )
    assert ("gunicorn" in names) == ("uvicorn-worker" in names) == (server == "gunicorn")
    assert ("granian" in names) == (server == "granian")
    assert ("uvicorn" in names) == (server != "granian")


@pytest.mark.parametrize("encoder", choice_values("json_encoder"))
def test_only_the_chosen_json_encoder_is_a_dependency(render: Render, encoder: str) -> None:
    project = render(json_encoder=encoder)
    names = dependency_names(project)
    responses = (project / "app" / "responses.py").read_text()

    assert ("orjson" in names) == (encoder == "orjson")
    assert ("msgspec" in names) == (encoder == "msgspec")
    assert f"({encoder})" in responses.splitlines()[0]
    # No deprecated FastAPI response class, and no app-wide default that disables the fast path.
    for path in (project / "app").glob("*.py"):
        text = path.read_text()
        assert "ORJSONResponse" not in text
        assert "UJSONResponse" not in text
        assert "default_response_class" not in text


@pytest.mark.parametrize("driver", choice_values("db_driver"))
def test_the_database_files_come_and_go_with_db_driver(render: Render, driver: str) -> None:
    project = render(db_driver=driver)
    database_files = [
        "alembic.ini",
        "migrations/env.py",
        "app/db.py",
        "app/seed.py",
        "app/orders/router.py",
        "tests/db/fixtures.py",
    ]

    present = {name for name in database_files if (project / name).is_file()}

    assert present == (set() if driver == "none" else set(database_files))
    assert ("sqlalchemy" in dependency_names(project)) == (driver != "none")
    compose = (project / "compose.yaml").read_text()
    assert ("\n  db:\n" in compose) == (driver not in {"none", "sqlalchemy-aiosqlite"})


def test_raw_asyncpg_runs_no_orm_on_requests(render: Render) -> None:
    project = render(db_driver="asyncpg")

    for module in ["app/db.py", "app/orders/service.py", "app/orders/router.py"]:
        assert "sqlalchemy" not in (project / module).read_text(), module
    # SQLAlchemy stays for what runs outside requests: migrations and the seed.
    assert "sqlalchemy" in (project / "migrations/env.py").read_text()


@pytest.mark.parametrize("cache", choice_values("cache"))
def test_only_the_chosen_cache_is_wired(render: Render, cache: str) -> None:
    app = render(cache=cache) / "app"

    assert (app / "cache.py").is_file() == (cache != "none")
    assert (app / "redis_cache.py").is_file() == (cache == "redis")
    assert (app / "breaker.py").is_file() == (cache == "redis")
    assert (app / "memory_cache.py").is_file() == (cache == "memory")


def test_a_cache_answer_without_a_database_wires_nothing(render: Render) -> None:
    # Copier still passes an answer given with -d for a question its `when` skips.
    project = render(db_driver="none", cache="redis")

    assert not (project / "app" / "cache.py").exists()
    assert "redis" not in dependency_names(project)
    assert "REDIS_URL" not in (project / "README.md").read_text()


@pytest.mark.parametrize("queue", choice_values("queue"))
def test_only_the_chosen_queue_is_wired(render: Render, queue: str) -> None:
    project = render(queue=queue)
    app = project / "app"
    scripts = tomllib.loads((project / "pyproject.toml").read_text())["project"]["scripts"]

    assert (app / "queue.py").is_file()
    assert (app / "worker.py").is_file() == (queue != "none")
    assert ("worker" in scripts) == (queue != "none")
    assert {"arq", "celery"} & dependency_names(project) == ({queue} - {"none"})


def test_a_queue_answer_without_a_database_wires_nothing(render: Render) -> None:
    project = render(db_driver="none", queue="celery")

    assert not (project / "app" / "queue.py").exists()
    assert not (project / "app" / "worker.py").exists()
    assert "celery" not in dependency_names(project)
    assert "QUEUE__" not in (project / "README.md").read_text()


# Every driver with cache x queue pairs that switch Redis on for one reason, both or neither.
REDIS_USERS = [("redis", "none"), ("none", "arq"), ("memory", "celery"), ("none", "none")]


@pytest.mark.parametrize("driver", choice_values("db_driver"))
@pytest.mark.parametrize(("cache", "queue"), REDIS_USERS)
def test_compose_file_is_valid_yaml_with_the_app_environment(
    render: Render, driver: str, cache: str, queue: str
) -> None:
    project = render(db_driver=driver, cache=cache, queue=queue)
    services = yaml.safe_load((project / "compose.yaml").read_text())["services"]
    uses_redis = driver != "none" and (cache == "redis" or queue != "none")

    assert ("DATABASE_URL" in services["app"]["environment"]) == (driver != "none")
    assert ("REDIS_URL" in services["app"]["environment"]) == uses_redis
    assert ("redis" in services) == uses_redis
    assert ("worker" in services) == (driver != "none" and queue != "none")
    if "worker" in services:
        assert services["worker"]["command"] == ["worker"]
        assert services["worker"]["environment"]["DATABASE_URL"]
    # Every container of the project's image as production runs it: nothing writable but /tmp.
    ours = {name for name, service in services.items() if service.get("build") == "."}
    assert "app" in ours
    for name in ours:
        assert services[name]["read_only"] is True, name
        assert services[name]["tmpfs"] == ["/tmp"], name  # noqa: S108 (a path in the file)
        assert services[name]["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in services[name]["security_opt"], name
