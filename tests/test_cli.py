"""Tests of the fastapi-perf-template CLI, run as a real process with real Copier and real git.

A subprocess with stdin from /dev/null is the only honest way to test the "no terminal" path and
the promise that the user sees one `error:` line and never a traceback.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from fastapi_perf_template import cli
from fastapi_perf_template._errors import ExitCode

REPO = Path(__file__).resolve().parents[1]


def run_cli(
    env: Mapping[str, str], *args: str | Path, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastapi_perf_template.cli", *map(str, args)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=cwd,
        timeout=120,
        check=False,
    )


def git(env: Mapping[str, str], cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=dict(env), capture_output=True, text=True, check=True
    ).stdout


def commit_all(env: Mapping[str, str], repo: Path, message: str) -> None:
    git(env, repo, "add", "-A")
    git(env, repo, "commit", "-q", "-m", message)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single `error:` line the CLI promises, after checking that it is all there is."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]


def answers_of(project: Path) -> dict[str, object]:
    data = yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of every CLI run: no user settings or git config of the developer's."""
    home = tmp_path_factory.mktemp("env")
    settings = home / "copier-settings.yml"
    # "{}" and not an empty file: Copier 9.19 reads an empty file as None and rejects it.
    settings.write_text("{}\n", encoding="utf-8")
    git_config = home / "gitconfig"
    git_config.write_text("", encoding="utf-8")
    return {
        **os.environ,
        "COPIER_SETTINGS_PATH": str(settings),
        "GIT_CONFIG_GLOBAL": str(git_config),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }


@pytest.fixture(scope="module")
def repo_template(tmp_path_factory: pytest.TempPathFactory, cli_env: dict[str, str]) -> Path:
    """A committed snapshot of this repo's copier.yml and template/.

    The working tree being edited is dirty, and Copier warns about that on stderr; a clean copy
    lets the tests demand that stderr is exactly one error line. Used with --vcs-ref HEAD so
    Copier does not print its "no git tags" notice either.
    """
    root = tmp_path_factory.mktemp("repo-template")
    shutil.copy2(REPO / "copier.yml", root / "copier.yml")
    shutil.copytree(
        REPO / "template",
        root / "template",
        ignore=shutil.ignore_patterns("__pycache__", "*.py[co]", ".*_cache", ".venv"),
    )
    git(cli_env, root, "init", "-q", "-b", "main")
    commit_all(cli_env, root, "snapshot")
    return root


@pytest.fixture(scope="module")
def release_template(tmp_path_factory: pytest.TempPathFactory, cli_env: dict[str, str]) -> Path:
    """A throwaway template with two releases: v0.1.0, then v0.2.0 which adds CHANGELOG.md."""
    root = tmp_path_factory.mktemp("release-template")
    (root / "copier.yml").write_text(
        "_subdirectory: template\n"
        "greeting:\n"
        "  type: str\n"
        "  help: What the service says\n"
        "  default: hello\n",
        encoding="utf-8",
    )
    template = root / "template"
    template.mkdir()
    (template / "{{_copier_conf.answers_file}}.jinja").write_text(
        "{{ _copier_answers|to_nice_yaml -}}\n", encoding="utf-8"
    )
    (template / "greeting.txt.jinja").write_text("{{ greeting }}\n", encoding="utf-8")
    git(cli_env, root, "init", "-q", "-b", "main")
    commit_all(cli_env, root, "first release")
    git(cli_env, root, "tag", "v0.1.0")
    (template / "CHANGELOG.md").write_text("Added in v0.2.0.\n", encoding="utf-8")
    commit_all(cli_env, root, "second release")
    git(cli_env, root, "tag", "v0.2.0")
    return root


@pytest.fixture
def project_v010(tmp_path: Path, cli_env: dict[str, str], release_template: Path) -> Path:
    """A project rendered from release_template at v0.1.0 and committed to its own git repo."""
    project = tmp_path / "project"
    result = run_cli(
        cli_env, "new", project, "--defaults", "--template", release_template, "--vcs-ref", "v0.1.0"
    )
    assert result.returncode == 0, result.stderr
    git(cli_env, project, "init", "-q", "-b", "main")
    commit_all(cli_env, project, "generated")
    return project


def write_answers(project: Path, src_path: str | Path, commit: str) -> Path:
    project.mkdir()
    (project / ".copier-answers.yml").write_text(
        yaml.safe_dump({"_commit": commit, "_src_path": str(src_path)}), encoding="utf-8"
    )
    return project


# new


def test_new_with_defaults_renders_from_this_clone(tmp_path: Path, cli_env: dict[str, str]) -> None:
    dest = tmp_path / "service"

    result = run_cli(cli_env, "new", dest, "--defaults", "--quiet")

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    answers = answers_of(dest)
    assert answers["_src_path"] == str(REPO)
    assert answers["_commit"]


def test_new_rejects_a_slug_that_fails_its_validator(
    tmp_path: Path, cli_env: dict[str, str], repo_template: Path
) -> None:
    dest = tmp_path / "service"
    result = run_cli(
        cli_env,
        "new",
        dest,
        "--defaults",
        "--template",
        repo_template,
        "--vcs-ref",
        "HEAD",
        "-d",
        "project_slug=Bad Slug",
    )

    assert result.returncode == ExitCode.INVALID_ANSWER
    assert "project_slug" in error_line(result)
    assert not dest.exists()


def test_new_rejects_an_answer_outside_the_choices(
    tmp_path: Path, cli_env: dict[str, str], repo_template: Path
) -> None:
    result = run_cli(
        cli_env,
        "new",
        tmp_path / "service",
        "--defaults",
        "--template",
        repo_template,
        "--vcs-ref",
        "HEAD",
        "-d",
        "python_version=3.10",
    )

    assert result.returncode == ExitCode.INVALID_ANSWER
    line = error_line(result)
    assert "python_version" in line
    assert "'3.10'" in line
    assert all(f"'{allowed}'" in line for allowed in ("3.13", "3.12", "3.11"))


def test_new_rejects_a_question_the_template_does_not_ask(
    tmp_path: Path, cli_env: dict[str, str], repo_template: Path
) -> None:
    dest = tmp_path / "service"
    result = run_cli(
        cli_env, "new", dest, "--defaults", "--template", repo_template, "-d", "cahce=redis"
    )

    assert result.returncode == ExitCode.INVALID_ANSWER
    line = error_line(result)
    assert "'cahce'" in line
    assert "project_slug" in line  # The allowed questions are listed.
    assert not dest.exists()


def test_new_suggests_the_question_a_typo_meant(
    tmp_path: Path, cli_env: dict[str, str], repo_template: Path
) -> None:
    result = run_cli(
        cli_env,
        "new",
        tmp_path / "service",
        "--defaults",
        "--template",
        repo_template,
        "-d",
        "projet_slug=orders-api",
    )

    assert result.returncode == ExitCode.INVALID_ANSWER
    assert "did you mean 'project_slug'?" in error_line(result)


def test_new_rejects_a_data_item_without_equals_sign(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    result = run_cli(cli_env, "new", tmp_path / "service", "--defaults", "-d", "foo")

    assert result.returncode == ExitCode.USAGE
    assert "'foo' is not key=value" in result.stderr
    assert "Traceback" not in result.stderr


def test_new_refuses_a_destination_whose_parent_is_missing(
    tmp_path: Path, cli_env: dict[str, str], repo_template: Path
) -> None:
    result = run_cli(
        cli_env, "new", tmp_path / "missing" / "service", "--defaults", "--template", repo_template
    )

    assert result.returncode == ExitCode.DESTINATION
    assert f"parent directory {tmp_path / 'missing'} does not exist" in error_line(result)
    assert not (tmp_path / "missing").exists()


def test_new_refuses_a_non_empty_destination_and_leaves_it_alone(
    tmp_path: Path, cli_env: dict[str, str], repo_template: Path
) -> None:
    dest = tmp_path / "service"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine\n", encoding="utf-8")

    result = run_cli(cli_env, "new", dest, "--defaults", "--template", repo_template)

    assert result.returncode == ExitCode.DESTINATION
    assert "is not empty" in error_line(result)
    assert [path.name for path in dest.iterdir()] == ["notes.txt"]
    assert (dest / "notes.txt").read_text(encoding="utf-8") == "mine\n"


def test_new_points_an_existing_project_to_update(
    tmp_path: Path, cli_env: dict[str, str], repo_template: Path
) -> None:
    dest = write_answers(tmp_path / "service", repo_template, "v0.1.0")

    result = run_cli(cli_env, "new", dest, "--defaults", "--template", repo_template)

    assert result.returncode == ExitCode.DESTINATION
    assert "use `fastapi-perf-template update`" in error_line(result)


def test_new_refuses_a_destination_that_is_a_file(
    tmp_path: Path, cli_env: dict[str, str], repo_template: Path
) -> None:
    dest = tmp_path / "service"
    dest.write_text("mine\n", encoding="utf-8")

    result = run_cli(cli_env, "new", dest, "--defaults", "--template", repo_template)

    assert result.returncode == ExitCode.DESTINATION
    assert "is not a directory" in error_line(result)
    assert dest.read_text(encoding="utf-8") == "mine\n"


def test_new_without_a_terminal_needs_defaults(
    tmp_path: Path, cli_env: dict[str, str], repo_template: Path
) -> None:
    dest = tmp_path / "service"
    result = run_cli(cli_env, "new", dest, "--template", repo_template)

    assert result.returncode == ExitCode.NEEDS_TERMINAL
    assert error_line(result) == (
        "error: no terminal to ask the questions on: pass --defaults (and -d key=value for answers)"
    )
    assert not dest.exists()


def test_new_reports_a_missing_local_template(tmp_path: Path, cli_env: dict[str, str]) -> None:
    missing = tmp_path / "no-such-template"
    result = run_cli(cli_env, "new", tmp_path / "service", "--defaults", "--template", missing)

    assert result.returncode == ExitCode.TEMPLATE_SOURCE
    assert f"template not found: {missing}" in error_line(result)


def test_new_reports_a_directory_that_is_not_a_template(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    not_a_template = tmp_path / "somewhere"
    not_a_template.mkdir()
    result = run_cli(
        cli_env, "new", tmp_path / "service", "--defaults", "--template", not_a_template
    )

    assert result.returncode == ExitCode.TEMPLATE_SOURCE
    assert "has no copier.yml" in error_line(result)


def test_new_reports_an_unknown_vcs_ref(
    tmp_path: Path, cli_env: dict[str, str], release_template: Path
) -> None:
    dest = tmp_path / "service"
    result = run_cli(
        cli_env, "new", dest, "--defaults", "--template", release_template, "--vcs-ref", "v9.9.9"
    )

    assert result.returncode == ExitCode.TEMPLATE_SOURCE
    assert "unknown --vcs-ref 'v9.9.9'" in error_line(result)
    assert not dest.exists()


def test_new_explains_an_empty_copier_settings_file(
    tmp_path: Path, cli_env: dict[str, str], release_template: Path
) -> None:
    settings = tmp_path / "empty-settings.yml"
    settings.write_text("", encoding="utf-8")
    env = {**cli_env, "COPIER_SETTINGS_PATH": str(settings)}
    dest = tmp_path / "service"

    result = run_cli(env, "new", dest, "--defaults", "--template", release_template)

    assert result.returncode == ExitCode.COPIER_FAILED
    assert f"invalid Copier settings in {settings}: the file is empty" in error_line(result)
    assert not dest.exists()


# update and check


def test_update_brings_an_old_project_to_the_latest_release(
    project_v010: Path, cli_env: dict[str, str]
) -> None:
    before = run_cli(cli_env, "check", project_v010)
    assert before.returncode == ExitCode.UPDATE_AVAILABLE, before.stderr
    assert before.stdout == (
        "update available: v0.1.0 -> v0.2.0 (run: fastapi-perf-template update)\n"
    )

    updated = run_cli(cli_env, "update", project_v010, "--defaults")
    assert updated.returncode == 0, updated.stderr
    assert answers_of(project_v010)["_commit"] == "v0.2.0"
    assert (project_v010 / "CHANGELOG.md").read_text(encoding="utf-8") == "Added in v0.2.0.\n"
    assert (project_v010 / "greeting.txt").read_text(encoding="utf-8") == "hello\n"
    commit_all(cli_env, project_v010, "update to v0.2.0")

    after = run_cli(cli_env, "check", project_v010)
    assert after.returncode == 0, after.stderr
    assert after.stdout == "up to date (v0.2.0)\n"

    downgrade = run_cli(cli_env, "update", project_v010, "--defaults", "--vcs-ref", "v0.1.0")
    assert downgrade.returncode == ExitCode.PROJECT_NOT_UPDATABLE
    assert "refusing to downgrade" in error_line(downgrade)
    assert answers_of(project_v010)["_commit"] == "v0.2.0"


def test_update_refuses_uncommitted_changes(project_v010: Path, cli_env: dict[str, str]) -> None:
    (project_v010 / "greeting.txt").write_text("local edit\n", encoding="utf-8")

    result = run_cli(cli_env, "update", project_v010, "--defaults")

    assert result.returncode == ExitCode.PROJECT_NOT_UPDATABLE
    assert "uncommitted changes" in error_line(result)
    assert (project_v010 / "greeting.txt").read_text(encoding="utf-8") == "local edit\n"
    assert answers_of(project_v010)["_commit"] == "v0.1.0"


def test_update_refuses_a_project_outside_git(
    tmp_path: Path, cli_env: dict[str, str], release_template: Path
) -> None:
    project = tmp_path / "project"
    rendered = run_cli(
        cli_env, "new", project, "--defaults", "--template", release_template, "--vcs-ref", "v0.1.0"
    )
    assert rendered.returncode == 0, rendered.stderr

    result = run_cli(cli_env, "update", project, "--defaults")

    assert result.returncode == ExitCode.PROJECT_NOT_UPDATABLE
    assert "not inside a git work tree" in error_line(result)


def test_update_refuses_a_project_without_answers_file(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("not generated\n", encoding="utf-8")
    git(cli_env, project, "init", "-q", "-b", "main")
    commit_all(cli_env, project, "by hand")

    result = run_cli(cli_env, "update", project, "--defaults")

    assert result.returncode == ExitCode.PROJECT_NOT_UPDATABLE
    assert "has no .copier-answers.yml" in error_line(result)


def test_update_refuses_a_path_that_is_not_a_directory(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    result = run_cli(cli_env, "update", tmp_path / "nowhere", "--defaults")

    assert result.returncode == ExitCode.PROJECT_NOT_UPDATABLE
    assert "is not a directory" in error_line(result)


def test_update_without_a_terminal_needs_defaults(
    project_v010: Path, cli_env: dict[str, str]
) -> None:
    result = run_cli(cli_env, "update", project_v010)

    assert result.returncode == ExitCode.NEEDS_TERMINAL
    assert "pass --defaults" in error_line(result)
    assert answers_of(project_v010)["_commit"] == "v0.1.0"


def test_update_rejects_a_question_the_template_does_not_ask(
    project_v010: Path, cli_env: dict[str, str]
) -> None:
    result = run_cli(cli_env, "update", project_v010, "--defaults", "-d", "greting=hi")

    assert result.returncode == ExitCode.INVALID_ANSWER
    assert "did you mean 'greeting'?" in error_line(result)


def test_update_changes_an_answer(project_v010: Path, cli_env: dict[str, str]) -> None:
    result = run_cli(cli_env, "update", project_v010, "--defaults", "-d", "greeting=hi")

    assert result.returncode == 0, result.stderr
    assert (project_v010 / "greeting.txt").read_text(encoding="utf-8") == "hi\n"
    assert answers_of(project_v010)["greeting"] == "hi"


@pytest.mark.parametrize(
    ("commit", "exit_code", "stdout"),
    [
        pytest.param(
            "v0.1.0-2-gabcdef1",
            ExitCode.UPDATE_AVAILABLE,
            "update available: v0.1.0-2-gabcdef1 -> v0.2.0 (run: fastapi-perf-template update)\n",
            id="commits-after-an-old-release",
        ),
        pytest.param(
            "v0.2.0-1-gabcdef1",
            ExitCode.OK,
            "up to date (v0.2.0-1-gabcdef1)\n",
            id="commits-after-the-latest-release",
        ),
        pytest.param(
            "1234567",
            ExitCode.OK,
            "cannot tell: the project was rendered from untagged commit 1234567;"
            " the latest release is v0.2.0\n",
            id="untagged-hash-that-looks-like-a-version",
        ),
    ],
)
def test_check_reads_describe_strings_and_hashes(
    tmp_path: Path,
    cli_env: dict[str, str],
    release_template: Path,
    commit: str,
    exit_code: ExitCode,
    stdout: str,
) -> None:
    project = write_answers(tmp_path / "project", release_template, commit)

    result = run_cli(cli_env, "check", project)

    assert (result.returncode, result.stdout) == (exit_code, stdout), result.stderr


def test_check_cannot_tell_without_release_tags(tmp_path: Path, cli_env: dict[str, str]) -> None:
    untagged = tmp_path / "untagged-template"
    untagged.mkdir()
    (untagged / "copier.yml").write_text("greeting: hello\n", encoding="utf-8")
    git(cli_env, untagged, "init", "-q", "-b", "main")
    commit_all(cli_env, untagged, "no release yet")
    project = write_answers(tmp_path / "project", untagged, "abcdef1")

    result = run_cli(cli_env, "check", project)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "template has no release tags; cannot tell\n"


def test_check_reports_an_unreachable_template(tmp_path: Path, cli_env: dict[str, str]) -> None:
    gone = tmp_path / "gone"
    project = write_answers(tmp_path / "project", gone, "v0.1.0")

    result = run_cli(cli_env, "check", project)

    assert result.returncode == ExitCode.TEMPLATE_SOURCE
    assert f"cannot read the tags of {gone}" in error_line(result)


def test_check_reports_a_project_without_answers_file(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    result = run_cli(cli_env, "check", tmp_path)

    assert result.returncode == ExitCode.PROJECT_NOT_UPDATABLE
    assert "has no .copier-answers.yml" in error_line(result)


def test_the_documented_exit_codes_are_the_ones_used() -> None:
    assert cli.__doc__ is not None
    table = cli.__doc__.split("Exit codes:", 1)[1]
    documented = [int(code) for code in re.findall(r"^\s+(\d+)\s", table, flags=re.MULTILINE)]
    assert documented == [code.value for code in ExitCode]
