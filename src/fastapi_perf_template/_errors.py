"""Exit codes of the CLI, the error that carries one to the user, and Copier's failures mapped.

Every failure the CLI knows about ends as one `error: <message>` line on stderr and one of the
exit codes below, so scripts and CI can tell "fix your answer" from "the template is unreachable"
without parsing text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path

from copier.errors import (
    ConfigFileError,
    CopierAnswersInterrupt,
    CopierError,
    InteractiveSessionError,
    UnsafeTemplateError,
    UnsupportedVersionError,
)
from plumbum import ProcessExecutionError


class ExitCode(IntEnum):
    """What the process exit status means; the table in cli's docstring documents it."""

    OK = 0
    UPDATE_AVAILABLE = 1
    USAGE = 2  # Raised by click itself for unknown options and malformed -d items.
    INVALID_ANSWER = 3
    DESTINATION = 4
    NEEDS_TERMINAL = 5
    TEMPLATE_SOURCE = 6
    PROJECT_NOT_UPDATABLE = 7
    COPIER_FAILED = 8
    INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C.


NO_TERMINAL = "no terminal to ask the questions on: pass --defaults (and -d key=value for answers)"

# Copier's own wording for a bad answer. Both messages name the question and what it accepts,
# so they are passed through as they are.
_ANSWER_ERRORS = re.compile(r"^(Validation error for question|Invalid choice for|Question \")")

# Git subcommands Copier runs to fetch the template; their failure means the source is
# unreachable or the ref does not exist, not that the project is broken.
_FETCH_COMMANDS = frozenset({"clone", "ls-remote", "fetch", "remote", "worktree", "submodule"})


class CliError(Exception):
    """A failure the user can act on: one line of text and the exit code that classifies it."""

    def __init__(self, exit_code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = one_line(message)


def one_line(text: str) -> str:
    """Fold a possibly multi-line message into the single line the CLI promises."""
    return " ".join(text.split())


def first_meaningful_line(output: str) -> str:
    """The line of git's stderr that says what went wrong, without git's "fatal:" prefix."""
    for line in output.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("hint:"):
            return re.sub(r"^(fatal|error): ", "", stripped)
    return ""


def _git_subcommand(argv: list[str]) -> str:
    """The git subcommand of a failed command line, skipping `-c key=value` style options."""
    args = iter(argv[1:])
    for arg in args:
        if arg in {"-c", "-C", "--git-dir", "--work-tree"}:
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return ""


@contextmanager
def copier_failures(*, destination: Path | None = None) -> Iterator[None]:
    """Turn what run_copy/run_update raise into CliError; anything unknown stays a traceback.

    `destination` is where files are written, so an OSError about a path inside it is a
    destination problem (permissions, disk full) rather than a Copier failure.
    """
    try:
        yield
    # CopierAnswersInterrupt is both a CopierError and a KeyboardInterrupt: it must come first.
    except (CopierAnswersInterrupt, KeyboardInterrupt) as error:
        raise CliError(ExitCode.INTERRUPTED, "interrupted") from error
    except InteractiveSessionError as error:
        # Copier's own text suggests --data-file, which this CLI does not have.
        raise CliError(ExitCode.NEEDS_TERMINAL, NO_TERMINAL) from error
    except UnsafeTemplateError as error:
        raise CliError(
            ExitCode.TEMPLATE_SOURCE,
            f"{str(error).splitlines()[0]} fastapi-perf-template never runs templates that need"
            " --trust",
        ) from error
    except (ConfigFileError, UnsupportedVersionError) as error:
        raise CliError(ExitCode.TEMPLATE_SOURCE, f"invalid template: {error}") from error
    except CopierError as error:
        raise CliError(ExitCode.COPIER_FAILED, str(error) or type(error).__name__) from error
    # ProcessExecutionError is an OSError, so it must come before the OSError clause below.
    except ProcessExecutionError as error:
        subcommand = _git_subcommand([str(arg) for arg in error.argv])
        reason = first_meaningful_line(str(error.stderr)) or f"exit status {error.retcode}"
        if subcommand in _FETCH_COMMANDS:
            raise CliError(
                ExitCode.TEMPLATE_SOURCE, f"cannot fetch the template: {reason}"
            ) from error
        raise CliError(ExitCode.COPIER_FAILED, f"git {subcommand} failed: {reason}") from error
    except ValueError as error:
        message = str(error)
        if _ANSWER_ERRORS.match(message):
            raise CliError(ExitCode.INVALID_ANSWER, message) from error
        if message.startswith(("Unknown revision", "Local template must be")):
            raise CliError(ExitCode.TEMPLATE_SOURCE, message) from error
        raise CliError(ExitCode.COPIER_FAILED, message) from error
    except OSError as error:
        where = Path(error.filename) if isinstance(error.filename, str) else None
        reason = f"{where}: {error.strerror}" if where else str(error)
        if where and destination and where.absolute().is_relative_to(destination.absolute()):
            raise CliError(ExitCode.DESTINATION, f"cannot write {reason}") from error
        raise CliError(ExitCode.COPIER_FAILED, reason) from error
