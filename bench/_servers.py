"""The apps under test as real server processes: start, wait until they answer, stop."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench._errors import BenchError
from bench._http import get
from bench._procs import tree_cpu_seconds

PR_SET_PDEATHSIG = 1
START_TIMEOUT_SECONDS = 90
STOP_TIMEOUT_SECONDS = 15
LOG_TAIL_CHARS = 3000


def log_tail(path: Path) -> str:
    """The end of a log file, where the reason a process failed usually is."""
    try:
        return path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except OSError:
        return ""


@dataclass
class Server:
    """One running app: its process (the root of its process tree), port and log file."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    # Set once SIGTERM went out: a second one could cut a graceful shutdown short.
    terminated: bool = field(default=False, init=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """CPU used so far by the whole tree: `uv run`, the server supervisor and its worker."""
        return tree_cpu_seconds(self.process.pid)

    def wait_ready(self, path: str) -> None:
        """Poll `path` until the app answers with anything but a 5xx, or fail with its log."""
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if self.process.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with status {self.process.returncode} while starting;"
                    f" its log ({self.log}) ends with:\n{log_tail(self.log)}"
                )
            try:
                if get(self.base_url + path, timeout=5).status < 500:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{self.name} did not answer {path} within {START_TIMEOUT_SECONDS} s;"
                    f" its log ({self.log}) ends with:\n{log_tail(self.log)}"
                )
            time.sleep(0.2)

    def terminate(self) -> None:
        """SIGTERM to the process group this runner created for it, once; stop() waits for it."""
        if self.terminated or self.process.poll() is not None:
            return
        self.terminated = True
        # The group is the one start() made with start_new_session: only this app's processes.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)

    def stop(self) -> None:
        """terminate(), then wait for the process, and SIGKILL its group if it lingers."""
        if self.process.poll() is not None:
            return
        self.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def terminate_all(servers: Iterable[Server]) -> None:
    """SIGTERM every server at once: they shut down side by side, not one after the other.

    Each takes about half a second to close its pools and exit; one by one, a run of eighteen
    apps would spend most of ten seconds on it.
    """
    for server in servers:
        server.terminate()


def _die_with_runner() -> None:
    """In the child before exec: SIGTERM it when the runner dies, even by SIGKILL.

    A runner killed by a CI timeout skips every `finally`; without this its apps would keep
    their ports and pools after it. (uv run passes the SIGTERM on to the server it started.)
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start(
    name: str,
    command: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    port: int,
    log: Path,
) -> Server:
    """Start `command` in its own session (so it can be stopped as a group), output to `log`."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # preexec_fn is unsafe with threads; the runner starts none.
            preexec_fn=_die_with_runner,
        )
    return Server(name, process, port, log)
