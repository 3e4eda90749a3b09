"""`copier update` end to end: from each release, across template changes, and answer switches.

Every update runs against a throwaway git copy of this template that the tests build themselves,
so they need no tags in the clone that runs them: each release in tests/releases.py (when the
clone has its commit), then the working tree, then two scripted releases on top of it. An update
is judged by comparing the project with a fresh rendering of the same answers from the same
release: anything else that differs is either the user's or a bug.
"""

import re
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import copier
import pytest
import yaml

from tests.commands import GIT_IDENTITY, REPO, run
from tests.conftest import questions
from tests.matrix import (
    COMBINATIONS,
    DEPLOY_SWITCH_BASE,
    DEPLOY_SWITCHES,
    NON_DEFAULT_ANSWERS,
    SWITCH_BASE,
    SWITCHES,
)
from tests.projects import SharedProjects, copy_template
from tests.releases import RELEASE_COMMITS, RELEASES

COPIER = str(Path(sys.executable).with_name("copier"))

# Far above any real release, so the newest tag Copier finds is always one of these. The working
# tree is the release under test; the two above it are scripted: one that changes nothing in the
# template (a release of the repo's own tooling), and one that changes the template.
WORKING_TREE = "v999.0.0"
NO_TEMPLATE_CHANGE = "v999.0.1"
TEMPLATE_CHANGE = "v999.1.0"

# What the scripted template release changes and adds, and where the tests expect to see it.
RELEASE_NOTE_LINE = "# Added by a later template release.\n"
NEW_TEMPLATE_FILE = "docs/runbook.md"
TEMPLATE_DOTENV = "ENVIRONMENT=development\n"

# Not compared: what tools write into a project, never the template.
UNCOMPARED_DIRS = {".git", ".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__"}
UNCOMPARED_FILES = {"uv.lock"}
CONFLICT_MARKER = re.compile(rb"^(<{7}|>{7})( |$)", re.MULTILINE)


def git(*args: str, cwd: Path) -> str:
    # No hooks or signing from the developer's own git config inside the throwaway repos.
    return run(
        ["git", "-c", "core.hooksPath=/dev/null", "-c", "commit.gpgsign=false", *args],
        cwd,
        env=GIT_IDENTITY,
    ).stdout


def commit_all(directory: Path, message: str) -> None:
    if not (directory / ".git").exists():
        git("init", "--quiet", "--initial-branch=main", cwd=directory)
    git("add", "--all", cwd=directory)
    git("commit", "--quiet", "--allow-empty", "--message", message, cwd=directory)


def release(template: Path, version: str, message: str) -> None:
    commit_all(template, message)
    git("-c", "tag.gpgsign=false", "tag", "--annotate", version, "--message", message, cwd=template)


def clear_tree(template: Path) -> None:
    for entry in template.iterdir():
        if entry.is_dir() and entry.name != ".git":
            shutil.rmtree(entry)
        elif entry.is_file():
            entry.unlink()


def copy_release_commit(template: Path, commit: str) -> None:
    clear_tree(template)
    archive = template.parent / f"{commit}.tar"
    run(["git", "archive", "--output", str(archive), commit], REPO)
    run(["tar", "-xf", str(archive), "-C", str(template)], REPO)
    archive.unlink()


def copy_working_tree(template: Path) -> None:
    """Tracked and new files as they are on disk, uncommitted edits included; not ignored ones."""
    clear_tree(template)
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], REPO)
    for name in filter(None, listed.stdout.split("\0")):
        source = REPO / name
        # Deleted but not yet committed: listed by --cached, gone from the tree being tested.
        if source.is_file():
            (template / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, template / name)


def template_file(template: Path, rendered: str) -> Path:
    """The template file that renders to a project path under a conditional directory name."""
    *parents, name = rendered.split("/")
    pattern = "/".join(f"*{part}*" for part in parents)
    matches = sorted((template / "template").glob(f"{pattern}/{name}*" if parents else name))
    assert len(matches) == 1, f"expected one template file for {rendered}: {matches}"
    return matches[0]


# A file of the orders example that the user deletes and the scripted release changes.
DELETED_EXAMPLE = "app/orders/quote.py"


def script_a_template_change(template: Path) -> None:
    """A release that edits two files, adds one, and starts shipping a default .env."""
    for rendered in (".env.example", DELETED_EXAMPLE):
        path = template_file(template, rendered)
        path.write_text(path.read_text() + RELEASE_NOTE_LINE)
    new_file = template / "template" / NEW_TEMPLATE_FILE
    new_file.parent.mkdir(parents=True, exist_ok=True)
    new_file.write_text("# Runbook\n")
    (template / "template" / ".env").write_text(TEMPLATE_DOTENV)
    # The generated project's own .gitignore, template/.gitignore, would keep it out of the commit.
    git("add", "--force", "template/.env", cwd=template)


@dataclass(frozen=True)
class TemplateHistory:
    path: Path
    # Releases from tests/releases.py whose commit this clone has, as tags ("v0.1.0").
    releases: tuple[str, ...]


@pytest.fixture(scope="session")
def template_history(tmp_path_factory: pytest.TempPathFactory) -> TemplateHistory:
    template = tmp_path_factory.mktemp("template-history")
    releases = []
    for version in RELEASES:
        commit = RELEASE_COMMITS[version]
        if run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], REPO, check=False).returncode:
            continue
        copy_release_commit(template, commit)
        release(template, f"v{version}", f"Release {version}")
        releases.append(f"v{version}")
    copy_working_tree(template)
    release(template, WORKING_TREE, "The working tree")
    (template / "CHANGELOG.md").write_text(
        (template / "CHANGELOG.md").read_text() + "\nA release of the repo's own tooling.\n"
    )
    release(template, NO_TEMPLATE_CHANGE, "A release that leaves the template alone")
    script_a_template_change(template)
    release(template, TEMPLATE_CHANGE, "A release that changes the template")
    return TemplateHistory(template, tuple(releases))


def render(template: Path, destination: Path, ref: str, answers: Mapping[str, str]) -> Path:
    return copy_template(template, destination, answers, ref)


def rendered_and_committed(
    template: Path, destination: Path, ref: str, answers: Mapping[str, str]
) -> Path:
    commit_all(render(template, destination, ref, answers), "Generated by fastapi-perf-template")
    return destination


def update(project: Path, ref: str | None = None) -> None:
    """`copier update --defaults`, as the README tells users to run it; None: the newest tag."""
    copier.run_update(
        project,
        vcs_ref=ref,
        defaults=True,
        overwrite=True,
        unsafe=False,
        quiet=True,
        conflict="inline",
    )


def answers_of(project: Path) -> dict[str, str]:
    answers: dict[str, str] = yaml.safe_load((project / ".copier-answers.yml").read_text())
    return answers


def user_answers(project: Path) -> dict[str, str]:
    return {key: value for key, value in answers_of(project).items() if not key.startswith("_")}


def files_of(project: Path) -> dict[str, bytes]:
    return {
        path.relative_to(project).as_posix(): path.read_bytes()
        for path in project.rglob("*")
        if path.is_file()
        and not UNCOMPARED_DIRS.intersection(path.relative_to(project).parts)
        and path.name not in UNCOMPARED_FILES
    }


def differences(project: Path, other: Path) -> set[str]:
    """Paths that exist in only one of two projects or differ between them."""
    mine, theirs = files_of(project), files_of(other)
    return {path for path in mine.keys() | theirs.keys() if mine.get(path) != theirs.get(path)}


def leftover_conflicts(project: Path) -> list[str]:
    """What a failed merge leaves: .rej files, unmerged index entries, conflict markers."""
    status = git("status", "--porcelain", "--ignored", "--untracked-files=all", cwd=project)
    rejects = [line[3:] for line in status.splitlines() if line.endswith(".rej")]
    unmerged = git("ls-files", "--unmerged", cwd=project).splitlines()
    markers = [path for path, text in files_of(project).items() if CONFLICT_MARKER.search(text)]
    return rejects + unmerged + markers


def changed_paths(project: Path) -> list[str]:
    status = git("status", "--porcelain", "--untracked-files=all", cwd=project)
    return sorted(line[3:] for line in status.splitlines())


# -- Updates across template releases ------------------------------------------------------------


def test_an_untouched_project_updates_to_exactly_a_fresh_rendering(
    template_history: TemplateHistory, tmp_path: Path
) -> None:
    template = template_history.path
    project = rendered_and_committed(
        template, tmp_path / "project", WORKING_TREE, NON_DEFAULT_ANSWERS
    )

    update(project)

    fresh = render(template, tmp_path / "fresh", TEMPLATE_CHANGE, NON_DEFAULT_ANSWERS)
    assert not leftover_conflicts(project)
    assert answers_of(project)["_commit"] == TEMPLATE_CHANGE
    assert user_answers(project).items() >= NON_DEFAULT_ANSWERS.items()
    assert not differences(project, fresh)
    assert (project / NEW_TEMPLATE_FILE).is_file()


def test_an_update_without_template_changes_touches_only_the_answers_file(
    template_history: TemplateHistory, tmp_path: Path
) -> None:
    project = rendered_and_committed(
        template_history.path, tmp_path / "project", WORKING_TREE, NON_DEFAULT_ANSWERS
    )
    before = answers_of(project)

    update(project, NO_TEMPLATE_CHANGE)

    assert changed_paths(project) == [".copier-answers.yml"]
    assert answers_of(project) == {**before, "_commit": NO_TEMPLATE_CHANGE}


# What a user does to a generated project between updates, and what each edit must look like after.
USER_LINE = "# Edited by the project.\n"
USER_MODULE = "app/billing.py"
USER_DOTENV = "DATABASE_URL=sqlite+aiosqlite:///./local.db\nSECRET=the-projects-own\n"


def replace_first_line(path: Path, line: str) -> None:
    path.write_text(line + path.read_text().split("\n", 1)[1])


def test_user_edits_survive_an_update_that_changes_the_template(
    template_history: TemplateHistory, tmp_path: Path
) -> None:
    template = template_history.path
    project = rendered_and_committed(
        template, tmp_path / "project", WORKING_TREE, NON_DEFAULT_ANSWERS
    )
    # A line in a file the release leaves alone, a line in one it changes elsewhere, a module of
    # the project's own, an example file deleted (and changed by the release), and a local .env.
    replace_first_line(project / "app" / "logs.py", USER_LINE)
    replace_first_line(project / ".env.example", USER_LINE)
    (project / USER_MODULE).write_text('"""Billing, the project\'s own domain."""\n')
    (project / DELETED_EXAMPLE).unlink()
    commit_all(project, "The project's own changes")
    (project / ".env").write_text(USER_DOTENV)

    update(project)

    fresh = render(template, tmp_path / "fresh", TEMPLATE_CHANGE, NON_DEFAULT_ANSWERS)
    assert not leftover_conflicts(project)
    assert differences(project, fresh) == {
        "app/logs.py",
        ".env.example",
        USER_MODULE,
        DELETED_EXAMPLE,
        ".env",
    }
    assert (project / "app" / "logs.py").read_text().startswith(USER_LINE)
    env_example = (project / ".env.example").read_text()
    assert env_example.startswith(USER_LINE)
    assert env_example.endswith(RELEASE_NOTE_LINE)
    assert (project / USER_MODULE).is_file()
    assert not (project / DELETED_EXAMPLE).exists()
    assert (project / ".env").read_text() == USER_DOTENV
    assert (fresh / ".env").read_text() == TEMPLATE_DOTENV
    assert (project / NEW_TEMPLATE_FILE).is_file()


def test_a_conflicting_edit_is_left_marked_for_the_project_to_resolve(
    template_history: TemplateHistory, tmp_path: Path
) -> None:
    """The other side of the tests above: what the README tells users to look for is there."""
    project = rendered_and_committed(
        template_history.path, tmp_path / "project", WORKING_TREE, NON_DEFAULT_ANSWERS
    )
    # The release appends a line right where the project appends its own.
    with (project / ".env.example").open("a") as env_example:
        env_example.write(USER_LINE)
    commit_all(project, "The project's own setting")

    update(project)

    conflicts = leftover_conflicts(project)
    assert ".env.example" in conflicts
    assert any(entry.endswith("\t.env.example") for entry in conflicts)
    text = (project / ".env.example").read_text()
    assert USER_LINE in text
    assert RELEASE_NOTE_LINE in text


# -- Updates from the real releases --------------------------------------------------------------


@dataclass(frozen=True)
class UpdatedRelease:
    project: Path
    fresh: Path


@pytest.fixture(scope="session", params=RELEASES, ids=[f"v{version}" for version in RELEASES])
def updated_release(
    request: pytest.FixtureRequest,
    template_history: TemplateHistory,
    tmp_path_factory: pytest.TempPathFactory,
) -> UpdatedRelease:
    """A project generated by a release with non-default answers, updated to the working tree."""
    tag = f"v{request.param}"
    if tag not in template_history.releases:
        commit = RELEASE_COMMITS[request.param][:12]
        pytest.skip(f"this clone lacks the commit of {tag} ({commit}): a shallow clone?")
    template = template_history.path
    directory = tmp_path_factory.mktemp(f"from-{tag}")
    project = rendered_and_committed(template, directory / "project", tag, NON_DEFAULT_ANSWERS)

    update(project, WORKING_TREE)

    fresh = render(template, directory / "fresh", WORKING_TREE, NON_DEFAULT_ANSWERS)
    return UpdatedRelease(project, fresh)


def test_a_project_from_a_release_updates_to_exactly_a_fresh_rendering(
    updated_release: UpdatedRelease,
) -> None:
    project = updated_release.project

    assert not leftover_conflicts(project)
    assert answers_of(project)["_commit"] == WORKING_TREE
    assert user_answers(project).items() >= NON_DEFAULT_ANSWERS.items()
    assert not differences(project, updated_release.fresh)


# The gates of an updated project (ruff, mypy, its own suite) are those of the same answers'
# rendering in tests/test_generated.py: the update tests prove the files are the same, and the
# matrix runs the gates, once, on a rendering every test of the run shares.
MATRIX_ONLY = {".copier-answers.yml"}  # _src_path and _commit name another template copy


def test_a_project_from_a_release_has_the_files_whose_gates_the_matrix_runs(
    updated_release: UpdatedRelease, shared_projects: SharedProjects
) -> None:
    assert NON_DEFAULT_ANSWERS in COMBINATIONS

    matrix_project = shared_projects.render(**NON_DEFAULT_ANSWERS)

    assert not differences(updated_release.project, matrix_project) - MATRIX_ONLY


# -- Answer changes as feature switches ----------------------------------------------------------

SWITCH_IDS = [f"{question}={value}" for question, value in SWITCHES]
# What the generated README tells users to run, word for word.
SWITCH_COMMAND = ["update", "--defaults", "--vcs-ref=:current:", "-d"]


@dataclass(frozen=True)
class Switched:
    base: Path
    project: Path
    fresh: Path


@pytest.fixture(scope="session")
def switch_base(
    template_history: TemplateHistory, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    directory = tmp_path_factory.mktemp("switch-base")
    return rendered_and_committed(template_history.path, directory, WORKING_TREE, SWITCH_BASE)


@pytest.fixture(scope="session")
def switched(
    template_history: TemplateHistory,
    switch_base: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str, str], Switched]:
    """The base project with one answer changed by `copier update`, once per switch."""
    done: dict[tuple[str, str], Switched] = {}

    def _switched(question: str, value: str) -> Switched:
        if (question, value) not in done:
            directory = tmp_path_factory.mktemp(f"switch-{question}-{value}")
            project = directory / "project"
            shutil.copytree(switch_base, project, symlinks=True)
            run([COPIER, *SWITCH_COMMAND, f"{question}={value}"], project)
            answers = {**SWITCH_BASE, question: value}
            fresh = render(template_history.path, directory / "fresh", WORKING_TREE, answers)
            done[question, value] = Switched(switch_base, project, fresh)
        return done[question, value]

    return _switched


@pytest.mark.parametrize(("question", "value"), SWITCHES, ids=SWITCH_IDS)
def test_an_answer_change_switches_exactly_that_feature(
    switched: Callable[[str, str], Switched], question: str, value: str
) -> None:
    result = switched(question, value)

    assert not leftover_conflicts(result.project)
    assert answers_of(result.project)["_commit"] == WORKING_TREE
    assert answers_of(result.project).get(question) == value
    assert differences(result.project, result.base), "the switch changed nothing"
    assert not differences(result.project, result.fresh)


@pytest.mark.parametrize(("question", "value"), SWITCHES, ids=SWITCH_IDS)
def test_a_switched_project_has_the_files_whose_gates_the_matrix_runs(
    switched: Callable[[str, str], Switched],
    shared_projects: SharedProjects,
    question: str,
    value: str,
) -> None:
    answers = {**SWITCH_BASE, question: value}
    assert answers in COMBINATIONS

    matrix_project = shared_projects.render(**answers)

    assert not differences(switched(question, value).project, matrix_project) - MATRIX_ONLY


@pytest.mark.parametrize(
    ("question", "value"),
    list(DEPLOY_SWITCHES),
    ids=[f"{question}={value}" for question, value in DEPLOY_SWITCHES],
)
def test_a_deployment_switch_changes_only_its_own_files_and_switches_back(
    template_history: TemplateHistory, tmp_path: Path, question: str, value: str
) -> None:
    assert DEPLOY_SWITCH_BASE in COMBINATIONS, "the base's Python must be a rendering gates run"
    own_files = DEPLOY_SWITCHES[question, value]
    base = rendered_and_committed(
        template_history.path, tmp_path / "base", WORKING_TREE, DEPLOY_SWITCH_BASE
    )
    project = tmp_path / "project"
    shutil.copytree(base, project, symlinks=True)

    run([COPIER, *SWITCH_COMMAND, f"{question}={value}"], project)

    fresh = render(
        template_history.path,
        tmp_path / "fresh",
        WORKING_TREE,
        {**DEPLOY_SWITCH_BASE, question: value},
    )
    assert not leftover_conflicts(project)
    assert not differences(project, fresh)
    changed = differences(project, base) - {".copier-answers.yml"}
    assert any(path.startswith(own_files) for path in changed), "the switch changed nothing"
    assert {path for path in changed if not path.startswith(own_files)} <= {"README.md"}

    commit_all(project, f"Switched {question} to {value}")
    run([COPIER, *SWITCH_COMMAND, f"{question}={questions()[question]['default']}"], project)

    assert not leftover_conflicts(project)
    assert not differences(project, base)


def test_the_generated_readme_documents_the_tested_switch_command() -> None:
    readme = (REPO / "template" / "README.md.jinja").read_text()

    assert f"uvx copier {' '.join(SWITCH_COMMAND)} cache=redis\n" in readme


def test_switching_a_feature_off_removes_its_files_even_when_edited(
    template_history: TemplateHistory, switch_base: Path, tmp_path: Path
) -> None:
    """As the generated README warns: git history keeps the edits, the project does not."""
    project = tmp_path / "project"
    shutil.copytree(switch_base, project, symlinks=True)
    replace_first_line(project / "app" / "memory_cache.py", USER_LINE)
    commit_all(project, "The project's own cache tweak")

    run([COPIER, *SWITCH_COMMAND, "cache=redis"], project)

    fresh = render(
        template_history.path, tmp_path / "fresh", WORKING_TREE, {**SWITCH_BASE, "cache": "redis"}
    )
    assert not leftover_conflicts(project)
    assert not (project / "app" / "memory_cache.py").exists()
    assert not differences(project, fresh)
