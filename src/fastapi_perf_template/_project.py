"""A generated project as `update` and `check` see it: its answers file and its git state.

Each check fails with one line saying what to fix, because Copier's own failures at these points
are either a traceback or a merge that half happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from ._errors import CliError, ExitCode
from ._source import GitFailed, git

ANSWERS_FILE = ".copier-answers.yml"


@dataclass(frozen=True)
class Answers:
    """The two entries of the answers file that tie a project to its template."""

    src_path: str
    commit: str


def read_answers(project: Path) -> Answers:
    """Read `_src_path` and `_commit` from the project's answers file."""
    if not project.is_dir():
        raise CliError(ExitCode.PROJECT_NOT_UPDATABLE, f"{project} is not a directory")
    answers_path = project / ANSWERS_FILE
    if not answers_path.is_file():
        raise CliError(
            ExitCode.PROJECT_NOT_UPDATABLE,
            f"{project} has no {ANSWERS_FILE}: it was not generated from a Copier template",
        )
    try:
        data = yaml.safe_load(answers_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise CliError(
            ExitCode.PROJECT_NOT_UPDATABLE, f"{answers_path} is not valid YAML: {error}"
        ) from error
    if not isinstance(data, dict):
        data = {}
    # YAML may read an unquoted hash such as 1234567 as a number, hence str().
    missing = [key for key in ("_src_path", "_commit") if not data.get(key)]
    if missing:
        raise CliError(
            ExitCode.PROJECT_NOT_UPDATABLE,
            f"{answers_path} lacks {' and '.join(missing)}: the template it came from is unknown"
            " (was it rendered from a directory that is not a git repository?)",
        )
    return Answers(src_path=str(data["_src_path"]), commit=str(data["_commit"]))


def ensure_clean_git_tree(project: Path) -> None:
    """Refuse a project Copier cannot merge an update into: outside git, or with local changes.

    Copier applies an update as a three-way merge onto the working tree; uncommitted changes
    would be mixed with the template's and could not be told apart or undone.
    """
    if not project.is_dir():
        raise CliError(ExitCode.PROJECT_NOT_UPDATABLE, f"{project} is not a directory")
    try:
        inside = git("rev-parse", "--is-inside-work-tree", cwd=project).strip() == "true"
    except GitFailed:
        inside = False
    if not inside:
        raise CliError(
            ExitCode.PROJECT_NOT_UPDATABLE,
            f"{project} is not inside a git work tree: commit the project to git first",
        )
    try:
        changes = git("status", "--porcelain", cwd=project)
    except GitFailed as error:
        raise CliError(
            ExitCode.PROJECT_NOT_UPDATABLE, f"cannot read the git status of {project}: {error}"
        ) from error
    if changes.strip():
        raise CliError(
            ExitCode.PROJECT_NOT_UPDATABLE,
            f"{project} has uncommitted changes: commit or stash them before updating",
        )
