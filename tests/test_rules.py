"""Template rules that keep `copier update` clean for every project ever generated.

Two rules live in tests/test_render.py with the other copier.yml checks: every question has a
default, and no _tasks, _jinja_extensions or _migrations.
"""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.version import Version

from tests.commands import REPO, run
from tests.conftest import choice_values, questions
from tests.releases import RELEASE_COMMITS, RELEASED_CHOICES, RELEASES, released_choices

# Paths a project owns once they exist (see _skip_if_exists in copier.yml).
PROJECT_OWNED = {".env"}


def copier_settings() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((REPO / "copier.yml").read_text())
    return config


def offered_choices(config: dict[str, Any]) -> dict[str, set[str]]:
    """Each choice question's stored values in a copier.yml (choices are a list or a map)."""
    offered = {}
    for name, spec in config.items():
        if name.startswith("_") or "choices" not in spec:
            continue
        choices = spec["choices"]
        offered[name] = set(choices.values() if isinstance(choices, dict) else choices)
    return offered


def test_no_released_choice_value_ever_disappears() -> None:
    offered = {question: set(choice_values(question)) for question in released_choices()}

    missing = {
        question: sorted(values - offered[question])
        for question, values in released_choices().items()
        if values - offered[question]
    }
    assert not missing, f"released values projects may store, gone from copier.yml: {missing}"


def test_every_offered_choice_value_is_recorded_for_its_release() -> None:
    recorded = released_choices()

    unrecorded = {
        question: sorted(values - recorded.get(question, set()))
        for question, values in offered_choices(questions()).items()
        if values - recorded.get(question, set())
    }
    assert not unrecorded, f"add these to RELEASED_CHOICES in tests/releases.py: {unrecorded}"


@pytest.mark.parametrize("version", RELEASES)
def test_the_recorded_choices_are_what_the_release_shipped(version: str) -> None:
    commit = RELEASE_COMMITS[version]
    shown = run(["git", "show", f"{commit}:copier.yml"], REPO, check=False)
    if shown.returncode != 0:
        pytest.skip(f"this clone lacks release {version}'s commit {commit[:12]}")
    shipped = offered_choices(yaml.safe_load(shown.stdout))

    recorded: dict[str, set[str]] = {}
    for release, choices in RELEASED_CHOICES.items():
        if Version(release) <= Version(version):
            for question, values in choices.items():
                recorded.setdefault(question, set()).update(values)
    assert shipped == recorded


def test_files_a_project_owns_are_never_overwritten_by_an_update() -> None:
    skipped = set(copier_settings().get("_skip_if_exists", []))

    assert skipped >= PROJECT_OWNED


def test_pre_commit_refuses_conflict_markers_and_rejected_hunks() -> None:
    """What `copier update` leaves when a merge fails must not reach a commit."""
    config = yaml.safe_load((REPO / "template" / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}

    # Copier writes its inline conflict markers outside any git merge, where the hook would
    # otherwise not look for them.
    assert "--assume-in-merge" in hooks["check-merge-conflict"].get("args", [])
    rejects = hooks["no-copier-rejects"]
    assert rejects["language"] == "fail"
    assert re.search(rejects["files"], "app/orders/router.py.rej")
    assert not re.search(rejects["files"], "app/orders/router.py")


def test_the_generated_gitignore_does_not_hide_rejected_hunks(tmp_path: Path) -> None:
    """A gitignored .rej would be invisible to `git status` and to the pre-commit hook."""
    run(["git", "init", "--quiet"], tmp_path)
    (tmp_path / ".gitignore").write_text((REPO / "template" / ".gitignore").read_text())

    # check-ignore exits 1 when nothing ignores the path, 0 when something does.
    assert run(["git", "check-ignore", "app/main.py.rej"], tmp_path, check=False).returncode == 1
    assert run(["git", "check-ignore", ".env"], tmp_path, check=False).returncode == 0
