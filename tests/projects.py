"""Rendered projects shared by every test and every xdist worker of one run: one per answer set.

Rendering a project costs a Copier run from a git checkout and `uv sync` costs a virtual
environment; the matrix, the render checks, the serve test and the update tests ask for the same
answer sets. Each answer set gets one directory under the run's shared temporary directory (the
parent of each xdist worker's own), and the first worker that asks renders (and syncs) it while
holding a file lock; the others wait on the lock, then find it done.

A project is handed out read-only by convention: tests that change files copy it first.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

import copier

from tests.commands import REPO, UV, run

# Written once a step has finished: a worker that died half-way leaves no marker, and the next
# one to ask starts that step again from scratch.
RENDERED = ".rendered-by-tests"
SYNCED = ".synced-by-tests"


def shared_root(basetemp: Path) -> Path:
    """The directory every worker of this run sees: the run's own under xdist, else basetemp."""
    return basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock between processes, held for the block (released if a holder dies)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def project_key(answers: Mapping[str, str]) -> str:
    """A short, readable, unique directory name for an answer set."""
    canonical = json.dumps(sorted(answers.items()))
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:10]
    readable = re.sub(r"[^a-z0-9.]+", "-", "-".join(answers.values()).lower()).strip("-")
    return f"{readable[:60] or 'defaults'}-{digest}"


def copy_template(
    source: Path, destination: Path, answers: Mapping[str, str], ref: str = "HEAD"
) -> Path:
    """`copier copy --defaults` of `source` at `ref`, as a user runs it (no --trust)."""
    copier.run_copy(
        str(source),
        destination,
        data=dict(answers),
        vcs_ref=ref,
        defaults=True,
        unsafe=False,
        quiet=True,
    )
    return destination


class SharedProjects:
    """`render(**answers)` and `synced(project)`, each done once per run, whichever worker asks."""

    def __init__(self, root: Path) -> None:
        self.root = root / "projects"
        self.root.mkdir(parents=True, exist_ok=True)
        # mypy's incremental cache, shared by every project's check (see test_generated.py).
        self.mypy_cache = root / "mypy-cache"

    def render(self, **answers: str) -> Path:
        """The working tree of this repo rendered with these answers (defaults for the rest)."""
        home = self.root / project_key(answers)
        project = home / "project"
        home.mkdir(exist_ok=True)
        with locked(home / "lock"):
            if not (home / RENDERED).exists():
                if project.exists():
                    shutil.rmtree(project)
                copy_template(REPO, project, answers)
                (home / RENDERED).touch()
        return project

    def synced(self, project: Path) -> Path:
        """`uv sync` a rendered project (its virtual environment, dev group included)."""
        home = project.parent
        with locked(home / "lock"):
            if not (home / SYNCED).exists():
                run([UV, "sync", "--quiet"], project)
                (home / SYNCED).touch()
        return project
