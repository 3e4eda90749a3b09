"""This repo holds itself to the gates it gives generated projects: ruff and mypy --strict."""

import sys

from tests.commands import REPO, run

TOOLS = [sys.executable, "-m"]


def test_ruff_is_clean() -> None:
    run([*TOOLS, "ruff", "check", "--no-fix", "."], REPO)
    run([*TOOLS, "ruff", "format", "--check", "."], REPO)


def test_mypy_strict_is_clean() -> None:
    run([*TOOLS, "mypy", "--strict"], REPO)


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()

    assert "\nuv run pytest\n" in readme
    assert "\nuv run pytest\n" in ci
