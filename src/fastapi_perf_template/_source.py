"""Where the template comes from: its location, its release tags and the questions it asks.

All of it is read with plain git (`ls-remote`, `show`), which works the same for a local clone
and a URL, so the CLI can check a user's input before Copier clones anything.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from packaging.version import InvalidVersion, Version

from ._errors import CliError, ExitCode, first_meaningful_line

CANONICAL_TEMPLATE = "https://github.com/fastapi-perf-template/fastapi-perf-template.git"

CONFIG_FILES = ("copier.yml", "copier.yaml")

# The same shortcuts Copier expands, so `ls-remote` reaches what Copier would clone.
_URL_SHORTCUTS = {"gh:": "https://github.com/", "gl:": "https://gitlab.com/"}
_REMOTE_PREFIXES = ("git@", "git+", *_URL_SHORTCUTS)


class GitFailed(Exception):
    """A git command failed; the message is the line of its stderr that says why."""


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git and return its stdout, or raise GitFailed with the reason it gave."""
    try:
        result = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=False
        )
    except FileNotFoundError as error:
        raise GitFailed("git is not installed (Copier needs it too)") from error
    if result.returncode != 0:
        reason = first_meaningful_line(result.stderr)
        raise GitFailed(reason or f"git {args[0]} exited with status {result.returncode}")
    return result.stdout


def default_template() -> str:
    """The clone this CLI runs from, or else the canonical repository.

    Never the files inside an installed wheel: they have no git history, so a project rendered
    from them could never be updated.
    """
    repo_root = Path(__file__).resolve().parents[2]
    if (repo_root / "copier.yml").is_file() and (repo_root / ".git").exists():
        return str(repo_root)
    return CANONICAL_TEMPLATE


def is_remote(location: str) -> bool:
    """Whether Copier would treat `location` as a URL rather than a directory."""
    return "://" in location or location.startswith(_REMOTE_PREFIXES)


def git_url(location: str) -> str:
    """`location` as git understands it (Copier's gh:/gl:/git+ shortcuts expanded)."""
    for shortcut, base in _URL_SHORTCUTS.items():
        if location.startswith(shortcut):
            path = location.removeprefix(shortcut).lstrip("/")
            return base + (path if path.endswith(".git") else f"{path}.git")
    return location.removeprefix("git+")


def local_template(location: str) -> Path:
    """The directory of a local template, checked to be one, as an absolute path.

    Absolute because Copier stores the path as given in `_src_path`, and a relative one would
    be resolved against whatever directory `update` later runs in.
    """
    directory = Path(location).expanduser()
    if not directory.is_dir():
        raise CliError(
            ExitCode.TEMPLATE_SOURCE, f"template not found: {location} is not a directory"
        )
    if not any((directory / name).is_file() for name in CONFIG_FILES):
        raise CliError(
            ExitCode.TEMPLATE_SOURCE, f"{location} has no copier.yml: it is not a Copier template"
        )
    return directory.resolve()


def is_git_root(directory: Path) -> bool:
    """Whether Copier will treat `directory` as a git template (and so honour refs and tags)."""
    try:
        top = git("rev-parse", "--show-toplevel", cwd=directory).strip()
    except GitFailed:
        return False
    return Path(top).resolve() == directory.resolve()


@dataclass(frozen=True)
class Release:
    """A tag of the template that is a PEP 440 final release."""

    tag: str
    version: Version


def parse_release(tag: str) -> Release | None:
    """The release a tag names, or None for tags that are not PEP 440 versions."""
    try:
        # packaging accepts a leading "v" (v0.2.0 == 0.2.0), as Copier does.
        version = Version(tag)
    except InvalidVersion:
        return None
    return Release(tag, version)


def releases(location: str) -> list[Release]:
    """The template's final releases, oldest first; prereleases are skipped as Copier skips them.

    Raises CliError (template source) when git cannot list the tags.
    """
    target = git_url(location)
    if not is_remote(location):
        # ls-remote misreads some relative paths (copier-org/copier#2589).
        target = str(Path(location).expanduser().resolve())
    try:
        output = git("ls-remote", "--tags", "--refs", "--", target)
    except GitFailed as error:
        raise CliError(
            ExitCode.TEMPLATE_SOURCE, f"cannot read the tags of {location}: {error}"
        ) from error
    tags = (line.partition("\t")[2].removeprefix("refs/tags/") for line in output.splitlines())
    found = [release for tag in tags if (release := parse_release(tag))]
    return sorted(
        (release for release in found if not release.version.is_prerelease),
        key=lambda release: release.version,
    )


def latest(found: Iterable[Release]) -> Release | None:
    """The newest release, the one Copier renders when no --vcs-ref is given."""
    return max(found, key=lambda release: release.version, default=None)


class _QuestionsLoader(yaml.SafeLoader):
    """SafeLoader that reads Copier's custom tags (such as !include) as None instead of failing."""


def _unresolved_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> None:
    return None


_QuestionsLoader.add_multi_constructor("!", _unresolved_tag)


def resolve_ref(template: Path, ref: str) -> str:
    """The commit `ref` names in a local git template, or CliError (template source).

    Copier resolves the ref in a clone, where the template's branches are origin/<name>; in the
    template itself they are plain branch names, so tags, branches and hashes all resolve here.
    """
    try:
        return git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=template).strip()
    except GitFailed as error:
        raise CliError(
            ExitCode.TEMPLATE_SOURCE,
            f"unknown --vcs-ref {ref!r}: {template} has no such tag, branch or commit",
        ) from error


def _config_text(template: Path, ref: str | None) -> str:
    """copier.yml as Copier will read it: from the working tree, or from the commit `ref` names."""
    # For HEAD Copier includes uncommitted changes, so the working tree is what it renders.
    if ref is None or ref == "HEAD":
        for name in CONFIG_FILES:
            if (template / name).is_file():
                return (template / name).read_text(encoding="utf-8")
        raise CliError(ExitCode.TEMPLATE_SOURCE, f"{template} has no copier.yml")
    commit = resolve_ref(template, ref)
    for name in CONFIG_FILES:
        try:
            return git("show", f"{commit}:{name}", cwd=template)
        except GitFailed:
            continue
    raise CliError(ExitCode.TEMPLATE_SOURCE, f"{template} has no copier.yml at {ref}")


def question_names(template: Path, ref: str | None) -> list[str] | None:
    """The questions a local template asks at `ref`, in order; None when that cannot be known.

    Top-level keys without a leading underscore are questions; the others are settings. A
    document that is not a mapping (a Copier `!include`) brings questions this function cannot
    see, so it gives up rather than reject a valid answer.
    """
    text = _config_text(template, ref)
    try:
        documents: list[Any] = list(yaml.load_all(text, Loader=_QuestionsLoader))
    except yaml.YAMLError as error:
        raise CliError(
            ExitCode.TEMPLATE_SOURCE, f"copier.yml of {template} is not valid YAML: {error}"
        ) from error
    names: list[str] = []
    for document in documents:
        if document is None:
            continue
        if not isinstance(document, dict):
            return None
        names.extend(str(key) for key in document if not str(key).startswith("_"))
    return list(dict.fromkeys(names))


_DESCRIBE = re.compile(r"^(?P<base>.+)-(?P<distance>\d+)-g(?P<hash>[0-9a-f]+)$")
_HASH = re.compile(r"^[0-9a-f]{7,64}$")


@dataclass(frozen=True)
class TemplatePosition:
    """Where a project's `_commit` sits in the template's history.

    `_commit` is an exact tag (v0.2.0), a `git describe` string (v0.2.0-3-gabc1234: three
    commits after v0.2.0) or a bare hash (no tag behind it). `release` is None for the last.
    """

    commit: str
    release: Version | None
    commits_after: int = 0

    def is_older_than(self, other: TemplatePosition) -> bool:
        """Whether `other` is strictly newer; False when either has no release to compare."""
        if self.release is None or other.release is None:
            return False
        return (self.release, self.commits_after) < (other.release, other.commits_after)


def position_of(commit: str, tags: Iterable[str] = ()) -> TemplatePosition:
    """Parse a project's `_commit`, knowing the template's tag names when they were listed."""
    if commit in set(tags):
        release = parse_release(commit)
        return TemplatePosition(commit, release.version if release else None)
    if match := _DESCRIBE.match(commit):
        base = parse_release(match["base"])
        if base:
            return TemplatePosition(commit, base.version, int(match["distance"]))
    # A short hash can be all digits, which PEP 440 would happily read as version 1234567.
    if not _HASH.match(commit) and (release := parse_release(commit)):
        return TemplatePosition(commit, release.version)
    return TemplatePosition(commit, None)
