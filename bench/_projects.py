"""Generated projects under test: rendered from this repo's working tree with its own CLI.

Each one is then run exactly as its README says (`uv sync`, `uv run alembic upgrade head`,
`uv run python -m app.seed`, `uv run serve`), so the benchmark measures what a user gets.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

from bench._errors import BenchError
from bench._procs import free_port
from tests.services import ServiceError, postgres

REPO = Path(__file__).resolve().parents[1]
ANSWERS_FILE = ".copier-answers.yml"
COMMAND_TIMEOUT_SECONDS = 900

# Answers that keep the measured path the database one, passed only when the question exists:
# the cache and the queue worker are not what these rows compare. A variant's own answers win
# (the cache-hit variant asks for cache=redis and keeps queue=none: no worker to run).
DATABASE_PATH_ANSWERS = {"cache": "none", "queue": "none"}

# How the projects are served besides host, port and database: one worker, 20 connections.
# Logging stays as shipped (access log on, level info): a line per request is part of what a
# user's service does, and it goes to the server's log file (bench._servers), as a container's
# stdout goes to a log collector. The reference apps write none, and the rows compare that too.
SERVE_SETTINGS = {
    "WEB_CONCURRENCY": "1",
    # The pool is budget // workers: 20 connections, as the reference apps have.
    "DB__CONNECTION_BUDGET": "20",
}

# The cache-hit project's cache besides REDIS_URL: a TTL far beyond any run, so no document warmed
# before the rounds expires during them (the template's 300 s would, in a run of many rounds).
CACHE_SETTINGS = {"CACHE__TTL": "86400"}

# What the smoke runs (--smoke, which the test suite runs, maybe on a loaded machine) add: Redis
# waits of seconds instead of the template's 0.1 s. A smoke run checks that every step works and
# that every cache-hit request is a hit; with 32 connections on one starved event loop a Redis
# reply can sit in the socket past 0.1 s, and the request becomes a miss. The numbers of a smoke
# run mean nothing, and the full runs keep the defaults.
SMOKE_CACHE_SETTINGS = {"CACHE__SOCKET_TIMEOUT": "1", "CACHE__CONNECT_TIMEOUT": "1"}


def template_questions(repo: Path = REPO) -> set[str]:
    """The question names in copier.yml (top-level keys without a leading underscore)."""
    config: dict[str, Any] = yaml.safe_load((repo / "copier.yml").read_text(encoding="utf-8"))
    return {name for name in config if not name.startswith("_")}


def answers_for(answers: Mapping[str, str], questions: set[str]) -> dict[str, str]:
    """The -d answers for one project: what it asks for, plus the database-path ones that exist."""
    missing = sorted(set(answers) - questions)
    if missing:
        raise BenchError(
            f"copier.yml has no question {', '.join(missing)}: this template cannot render the"
            " variant that needs it yet"
        )
    extra = {name: value for name, value in DATABASE_PATH_ANSWERS.items() if name in questions}
    return {**extra, **answers}


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for commands run inside a project.

    Without the runner's own VIRTUAL_ENV (`uv run` sets it to this repo's venv, and uv would warn
    about it inside every project), and with the extra variables given.
    """
    env = {name: value for name, value in os.environ.items() if name != "VIRTUAL_ENV"}
    env.update(extra or {})
    return env


def run(command: Sequence[str], cwd: Path, what: str, env: Mapping[str, str] | None = None) -> str:
    """Run a command to completion; on failure, stop the benchmark with the command's output."""
    try:
        result = subprocess.run(
            list(command),
            cwd=cwd,
            env=clean_env(env),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise BenchError(f"{what} took more than {COMMAND_TIMEOUT_SECONDS} s") from error
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-4000:]
        raise BenchError(f"{what} failed ({result.returncode}) in {cwd}:\n{output}")
    return result.stdout


def render(uv: str, destination: Path, answers: Mapping[str, str], env: Mapping[str, str]) -> str:
    """`fastapi-perf-template new DEST --defaults --template REPO --vcs-ref HEAD -d ...`.

    Returns the command. --vcs-ref HEAD: without it Copier renders the newest release tag once
    the repo has one; HEAD of a local template is its working tree, uncommitted edits included,
    which is what a benchmark of this checkout has to measure (and the copier.yml whose
    questions `template_questions` reads).
    """
    command = [uv, "run", "fastapi-perf-template", "new", str(destination), "--defaults"]
    command += ["--template", str(REPO), "--vcs-ref", "HEAD", "--quiet"]
    for name, value in answers.items():
        command += ["-d", f"{name}={value}"]
    run(command, REPO, f"rendering {destination.name}", env)
    return " ".join(command)


def stored_answers(project: Path) -> dict[str, Any]:
    """The answers the project was rendered with, as Copier stored them."""
    answers: dict[str, Any] = yaml.safe_load((project / ANSWERS_FILE).read_text(encoding="utf-8"))
    return answers


def ensure_orders_domain(project: Path) -> None:
    """Stop with a clear message when the rendered project has nothing to benchmark yet."""
    needed = [project / "app" / "orders", project / "alembic.ini", project / "app" / "seed.py"]
    absent = [str(path.relative_to(project)) for path in needed if not path.exists()]
    if absent:
        raise BenchError(
            f"the rendered project has no {', '.join(absent)}: this template does not generate"
            " the orders example domain (GET /orders/{id}, migrations, seed) yet"
        )


def interpreter(project: Path) -> Path:
    """The base interpreter under the project's venv (after `uv sync`), for the reference apps.

    By path, not by version number: uv may not find a "3.13" on its own where the project's
    interpreter came from a version manager, and the same build is the fairer comparison anyway.
    """
    python = project / ".venv" / "bin" / "python"
    if not python.exists():
        raise BenchError(f"{project.name} has no .venv/bin/python after uv sync")
    return python.resolve()


def python_version(python: Path) -> str:
    """The full version of an interpreter, e.g. 3.13.0."""
    code = "import platform; print(platform.python_version())"
    return run([str(python), "-c", code], REPO, "python version").strip()


def sync(uv: str, project: Path) -> None:
    run([uv, "sync", "--quiet"], project, f"uv sync in {project.name}")


def start_database(stack: ExitStack) -> str:
    """A throwaway PostgreSQL, stopped with `stack`; its plain postgresql:// URL."""
    try:
        database = stack.enter_context(postgres())
    except ServiceError as error:
        raise BenchError(f"cannot start PostgreSQL: {error}") from error
    return database.url_for()


def migrate_and_seed(
    uv: str, project: Path, database_url: str, *, orders: int, items_per_order: int
) -> None:
    """Create the schema and the deterministic data every variant reads."""
    env = {"DATABASE_URL": database_url}
    run([uv, "run", "alembic", "upgrade", "head"], project, "alembic upgrade head", env)
    seed = ["--orders", str(orders), "--items-per-order", str(items_per_order)]
    run([uv, "run", "python", "-m", "app.seed", *seed], project, "app.seed", env)


def serve_env(
    port: int,
    database_url: str,
    redis_url: str | None = None,
    cache_settings: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of `uv run serve`: SERVE_SETTINGS, on a loopback port, this database.

    With `redis_url`, also the cache's Redis, CACHE_SETTINGS and `cache_settings`.
    """
    cache = (
        {"REDIS_URL": redis_url, **CACHE_SETTINGS, **(cache_settings or {})} if redis_url else {}
    )
    return clean_env(
        {
            "HOST": "127.0.0.1",
            "PORT": str(port),
            # Metrics stay on, as users get them, on a port of their own: services run side by side.
            "METRICS__PORT": str(free_port()),
            "DATABASE_URL": database_url,
            **SERVE_SETTINGS,
            **cache,
        }
    )
