"""The fastapi-perf-template command: create a service from the template, update it, check it.

A thin Typer layer over Copier's public API (run_copy, run_update). It checks what it can before
Copier starts, so a mistake is reported as one `error: <message>` line on stderr instead of a
traceback or a half-written directory, and it never passes unsafe=True: the template must work
without --trust.

Exit codes:
    0    ok; for `check`: up to date, or nothing to compare with
    1    `check` only: an update is available
    2    usage error, reported by click (unknown option, a -d item that is not key=value)
    3    invalid answer (fails its validator, not one of the choices, no such question)
    4    destination problem (parent missing, destination not empty or a file, not writable)
    5    the questions need a terminal: pass --defaults
    6    template source unreachable or invalid (no such path or ref, no copier.yml, git failed)
    7    project cannot be updated (not git, uncommitted changes, no answers file, downgrade)
    8    other Copier failure
    130  interrupted
"""

from __future__ import annotations

import difflib
import os
import sys
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, TextIO

import typer
from copier import Settings, load_settings, run_copy, run_update
from copier.errors import SettingsError

from ._errors import NO_TERMINAL, CliError, ExitCode, copier_failures, one_line
from ._project import ANSWERS_FILE, ensure_clean_git_tree, read_answers
from ._source import (
    Release,
    TemplatePosition,
    default_template,
    is_git_root,
    is_remote,
    latest,
    local_template,
    position_of,
    question_names,
    releases,
    resolve_ref,
)

PROG = "fastapi-perf-template"

app = typer.Typer(
    name=PROG,
    help="Create FastAPI services from the fastapi-perf-template Copier template, and keep them"
    " up to date with it.",
    no_args_is_help=True,
    add_completion=False,
    # Plain click output: errors stay greppable lines instead of boxes drawn for a wide terminal.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

DataOption = Annotated[
    list[str] | None,
    typer.Option(
        "--data",
        "-d",
        metavar="KEY=VALUE",
        help="Answer a question instead of being asked, e.g. -d project_slug=orders-api."
        " Repeatable.",
        show_default=False,
    ),
]
DefaultsOption = Annotated[
    bool,
    typer.Option("--defaults", help="Use the default answer for every question not given with -d."),
]
VcsRefOption = Annotated[
    str | None,
    typer.Option(
        "--vcs-ref",
        metavar="REF",
        help="Template tag, branch or commit to use. Default: its latest release tag.",
        show_default=False,
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]


@contextmanager
def _reported() -> Iterator[None]:
    """Print a CliError as its one line and exit with its code."""
    try:
        yield
    except CliError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(error.exit_code) from None


def _parse_data(items: list[str] | None) -> dict[str, str]:
    """`-d key=value` items as a mapping; values stay strings for Copier to cast per question."""
    answers: dict[str, str] = {}
    for item in items or []:
        key, separator, value = item.partition("=")
        if not separator or not key.strip():
            raise typer.BadParameter(f"{item!r} is not key=value", param_hint="'-d' / '--data'")
        answers[key.strip()] = value
    return answers


def _settings() -> Settings:
    """Copier's user settings, loaded here so a broken settings file is one line of error."""
    try:
        return load_settings()
    except SettingsError as error:
        env_path = os.environ.get("COPIER_SETTINGS_PATH")
        # Copier 9.19 reads an empty file as None and rejects it; say so rather than quote pydantic.
        if (
            env_path
            and Path(env_path).is_file()
            and not Path(env_path).read_text(encoding="utf-8").strip()
        ):
            reason = "the file is empty: write {} in it, or unset COPIER_SETTINGS_PATH"
        else:
            reason = str(error)
        where = env_path or "Copier's settings.yml"
        raise CliError(
            ExitCode.COPIER_FAILED, f"invalid Copier settings in {where}: {reason}"
        ) from error


def _ensure_can_ask(defaults: bool) -> None:
    """Fail before Copier starts prompting on a stdin nobody types into (CI, pipes, cron)."""
    if not defaults and (sys.stdin is None or not sys.stdin.isatty()):
        raise CliError(ExitCode.NEEDS_TERMINAL, NO_TERMINAL)


def _ensure_fresh_destination(destination: Path) -> None:
    """Accept only a new or empty directory under an existing parent.

    Copier would create a missing parent tree silently (a typo becomes a stray directory) and
    would render over an existing project, asking about each conflicting file.
    """
    parent = destination.absolute().parent
    if not parent.is_dir():
        raise CliError(ExitCode.DESTINATION, f"parent directory {parent} does not exist")
    if destination.exists() and not destination.is_dir():
        raise CliError(ExitCode.DESTINATION, f"{destination} exists and is not a directory")
    if destination.is_dir() and any(destination.iterdir()):
        if (destination / ANSWERS_FILE).is_file():
            raise CliError(
                ExitCode.DESTINATION,
                f"{destination} is already a generated project: use"
                f" `{PROG} update` to update an existing project",
            )
        raise CliError(
            ExitCode.DESTINATION, f"{destination} is not empty: choose a new or empty directory"
        )


def _rendered_ref(template: Path, vcs_ref: str | None) -> str | None:
    """The ref Copier will render from a local template; None for its working tree."""
    if vcs_ref is not None:
        return vcs_ref
    if not is_git_root(template):
        return None
    # Copier renders the newest release tag, or HEAD plus uncommitted changes when there is none.
    newest = latest(releases(str(template)))
    return newest.tag if newest else None


def _reject_unknown_questions(answers: Mapping[str, str], template: Path, ref: str | None) -> None:
    """Refuse -d keys the template does not ask: Copier would drop them without a word."""
    names = question_names(template, ref)
    if names is None:
        return
    unknown = [key for key in answers if key not in names]
    if not unknown:
        return
    described = []
    for key in unknown:
        close = difflib.get_close_matches(key, names, n=1)
        described.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    raise CliError(
        ExitCode.INVALID_ANSWER,
        f"no such question: {', '.join(described)}; the template asks: {', '.join(names)}",
    )


def _refuse_downgrade(commit: str, vcs_ref: str | None, found: list[Release]) -> None:
    """Stop an update to a release older than the one the project is on.

    Copier refuses too, but only after cloning; this says which two versions are involved.
    """
    tags = [release.tag for release in found]
    current = position_of(commit, tags)
    if vcs_ref is None:
        newest = latest(found)
        target = TemplatePosition(newest.tag, newest.version) if newest else None
    else:
        target = position_of(vcs_ref, tags) if vcs_ref in tags else None
    if target is not None and target.is_older_than(current):
        raise CliError(
            ExitCode.PROJECT_NOT_UPDATABLE,
            f"refusing to downgrade: the project is at {current.commit} and {target.commit}"
            " is older",
        )


def _checked_local_source(location: str, vcs_ref: str | None, answers: Mapping[str, str]) -> str:
    """Check a local template, the ref asked for and the -d keys; return the path for Copier.

    A remote template's questions are only known once Copier has cloned it, so for a URL these
    checks are left to Copier rather than cloning twice.
    """
    local = local_template(location)
    if vcs_ref is not None:
        if not is_git_root(local):
            raise CliError(
                ExitCode.TEMPLATE_SOURCE,
                f"--vcs-ref needs a git template and {location} is not a git repository",
            )
        resolve_ref(local, vcs_ref)
    if answers:
        _reject_unknown_questions(answers, local, _rendered_ref(local, vcs_ref))
    return str(local)


@app.command()
def new(
    dest: Annotated[
        Path, typer.Argument(metavar="DEST", help="New (or empty) directory for the service.")
    ],
    defaults: DefaultsOption = False,
    data: DataOption = None,
    template: Annotated[
        str | None,
        typer.Option(
            "--template",
            metavar="SRC",
            help="Template to render: a git URL or a local clone. Default: the clone this"
            " command runs from, else the canonical repository.",
            show_default=False,
        ),
    ] = None,
    vcs_ref: VcsRefOption = None,
    quiet: QuietOption = False,
) -> None:
    """Create a new service in DEST from the template."""
    answers = _parse_data(data)
    with _reported():
        _ensure_fresh_destination(dest)
        location = template or default_template()
        source = (
            location if is_remote(location) else _checked_local_source(location, vcs_ref, answers)
        )
        _ensure_can_ask(defaults)
        settings = _settings()
        with copier_failures(destination=dest):
            run_copy(
                source,
                dest,
                data=answers,
                defaults=defaults,
                vcs_ref=vcs_ref,
                settings=settings,
                unsafe=False,
                quiet=quiet,
            )


@app.command()
def update(
    project: Annotated[
        Path, typer.Argument(metavar="PROJECT", help="The generated project to update.")
    ] = Path("."),
    defaults: DefaultsOption = False,
    data: DataOption = None,
    vcs_ref: VcsRefOption = None,
    quiet: QuietOption = False,
) -> None:
    """Merge template changes since the project's version into PROJECT (a clean git tree)."""
    answers = _parse_data(data)
    with _reported():
        ensure_clean_git_tree(project)
        stored = read_answers(project)
        found = releases(stored.src_path)
        _refuse_downgrade(stored.commit, vcs_ref, found)
        if not is_remote(stored.src_path):
            _checked_local_source(stored.src_path, vcs_ref, answers)
        _ensure_can_ask(defaults)
        settings = _settings()
        with copier_failures(destination=project):
            run_update(
                project,
                data=answers,
                defaults=defaults,
                # Copier's Python API refuses to update without it; git holds the old state.
                overwrite=True,
                vcs_ref=vcs_ref,
                settings=settings,
                unsafe=False,
                quiet=quiet,
            )


@app.command()
def check(
    project: Annotated[
        Path, typer.Argument(metavar="PROJECT", help="The generated project to check.")
    ] = Path("."),
) -> None:
    """Say whether the template has a release newer than PROJECT's (exit 1 if so)."""
    with _reported():
        stored = read_answers(project)
        found = releases(stored.src_path)
        newest = latest(found)
        if newest is None:
            typer.echo("template has no release tags; cannot tell")
            return
        current = position_of(stored.commit, [release.tag for release in found])
        if current.release is None:
            typer.echo(
                f"cannot tell: the project was rendered from untagged commit {current.commit};"
                f" the latest release is {newest.tag}"
            )
            return
        if current.is_older_than(TemplatePosition(newest.tag, newest.version)):
            typer.echo(f"update available: {current.commit} -> {newest.tag} (run: {PROG} update)")
            raise typer.Exit(ExitCode.UPDATE_AVAILABLE)
        typer.echo(f"up to date ({current.commit})")


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Print a warning (Copier's "dirty template", for one) as one line, without source paths."""
    print(f"warning: {one_line(str(message))}", file=file or sys.stderr)


def main() -> None:
    """Console-script entry point."""
    warnings.showwarning = _show_warning
    app(prog_name=PROG)


if __name__ == "__main__":
    main()
