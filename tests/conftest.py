"""Fixtures that render the template into temporary projects and run commands inside them."""

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

# Throwaway PostgreSQL, MariaDB and Redis servers on loopback, started when a test asks.
pytest_plugins = ["tests.services"]

REPO = Path(__file__).resolve().parents[1]
# The uv locked in this repo's dev group, by absolute path: a pyenv shim named `uv` would resolve
# to another interpreter inside a generated project whose .python-version differs.
UV = str(Path(sys.executable).with_name("uv"))
COMMAND_TIMEOUT_SECONDS = 600

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Template Tests",
    "GIT_AUTHOR_EMAIL": "tests@fastapi-perf-template.invalid",
    "GIT_COMMITTER_NAME": "Template Tests",
    "GIT_COMMITTER_EMAIL": "tests@fastapi-perf-template.invalid",
}

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


def run(
    command: Sequence[str],
    cwd: Path,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = COMMAND_TIMEOUT_SECONDS,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure, fail the test with the command's own output."""
    result = subprocess.run(
        list(command),
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited {result.returncode} in {cwd}\n"
            f"--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}"
        )
    return result


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
        yield


@pytest.fixture(scope="session")
def render(copie_session: Any) -> Render:
    """Render the working tree of this repo with some answers (defaults for the rest), once each."""
    rendered: dict[tuple[tuple[str, str], ...], Path] = {}

    def _render(**answers: str) -> Path:
        key = tuple(sorted(answers.items()))
        if key not in rendered:
            result = copie_session.copy(extra_answers=answers, template_dir=REPO, vcs_ref="HEAD")
            assert result.exception is None, result.exception
            rendered[key] = Path(result.project_dir)
        return rendered[key]

    return _render


@pytest.fixture(scope="session")
def synced() -> Callable[[Path], Path]:
    """`uv sync` a rendered project once per session (uv's shared cache keeps it quick)."""
    done: set[Path] = set()

    def _synced(project: Path) -> Path:
        if project not in done:
            run([UV, "sync", "--quiet"], project)
            done.add(project)
        return project

    return _synced
