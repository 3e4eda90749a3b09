"""This repo holds itself to the gates it gives generated projects: ruff and mypy --strict."""

import sys

from tests.commands import REPO, run

TOOLS = [sys.executable, "-m"]


def test_ruff_is_clean() -> None:
    run([*TOOLS, "ruff", "check", "--no-fix", "."], REPO)
    run([*TOOLS, "ruff", "format", "--check", "."], REPO)


def test_mypy_strict_is_clean() -> None:
    run([*TOOLS, "mypy", "--strict"], REPO)


def test_the_readme_test_command_is_what_ci_runs() -> None:
    """The README's test command is `.ci/run` (it installs what a fresh machine lacks), and the
    script ends in the suite itself."""
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()

    assert "```sh\nbash .ci/run\n```" in readme
    assert ci.rstrip().endswith("\nuv run pytest")
