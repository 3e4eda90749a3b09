"""Fixtures that render the template into temporary projects and run commands inside them."""

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.commands import GIT_IDENTITY, REPO
from tests.projects import SharedProjects, shared_root

# Throwaway PostgreSQL, MariaDB and Redis servers on loopback, started when a test asks.
pytest_plugins = ["tests.services"]

Render = Callable[..., Path]


def questions() -> dict[str, Any]:
    """The questions of copier.yml: not its settings (leading underscore), not computed values."""
    config: dict[str, Any] = yaml.safe_load((REPO / "copier.yml").read_text())
    return {
        name: spec
        for name, spec in config.items()
        if not name.startswith("_") and spec.get("when") is not False
    }


def choice_values(question: str) -> list[str]:
    """The stored values of a choice question (choices are a list, or a label -> value map)."""
    choices = questions()[question]["choices"]
    return list(choices.values()) if isinstance(choices, dict) else list(choices)


@pytest.fixture(scope="session", autouse=True)
def isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the developer's own Copier settings, git identity and active venv out of the tests."""
    settings = tmp_path_factory.mktemp("copier-settings") / "settings.yml"
    # An empty mapping: Copier rejects an empty file (it reads as None, not as no settings).
    settings.write_text("{}\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COPIER_SETTINGS_PATH", str(settings))
        for name, value in GIT_IDENTITY.items():
            patch.setenv(name, value)
        # An outer venv would make uv warn inside every generated project.
        patch.delenv("VIRTUAL_ENV", raising=False)
        # Set when pytest was started through a pyenv shim (`uv` installed by pyenv's pip): it
        # pins every shim to that one Python, so uv could not find the 3.12 or 3.13 that a
        # generated project's .python-version asks for, and would try to download one.
        patch.delenv("PYENV_VERSION", raising=False)
        # Some images set it (this CI machine's does). Without bytecode caching every Python
        # process the tests start (each server worker, queue worker, generated suite) compiles
        # FastAPI, SQLAlchemy and pydantic again: 2.8 s of CPU per import of app.main instead of
        # 1.2 s, half of the CPU time a generated project's suite takes.
        patch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
        # A developer's own servers: each test names the ones it means, or none (the generated
        # projects' local servers, tests/test_dev.py and the matrix's LOCAL_SERVERS suites).
        for name in ("DATABASE_URL", "MIGRATION_DATABASE_URL", "REDIS_URL"):
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(scope="session")
def shared_projects(tmp_path_factory: pytest.TempPathFactory) -> SharedProjects:
    return SharedProjects(shared_root(tmp_path_factory.getbasetemp()))


@pytest.fixture(scope="session")
def render(shared_projects: SharedProjects) -> Render:
    """Render this repo's working tree with some answers (defaults for the rest), once a run."""
    return shared_projects.render


@pytest.fixture(scope="session")
def synced(shared_projects: SharedProjects) -> Callable[[Path], Path]:
    """`uv sync` a rendered project once a run (uv's shared cache keeps it quick)."""
    return shared_projects.synced


# Workers per CPU for `-n auto` (pyproject.toml). Most of a generated project's suite waits:
# servers and workers starting, retries backing off, a killed job coming back. A second process
# per CPU fills those waits with another project's mypy or render.
XDIST_WORKERS_PER_CPU = 2


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    return XDIST_WORKERS_PER_CPU * len(os.sched_getaffinity(0))
