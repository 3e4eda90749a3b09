"""Debian's nginx on loopback, running a project's shipped deploy/nginx/nginx.conf for real.

The shipped file is a production nginx.conf. `localized` changes exactly three things in it,
each found by its directive, never by copying the file's ideas into a test config of its own:
- the `listen` port, to a free one on 127.0.0.1;
- the address of each `server` of the `upstream` block (their parameters are kept), in order;
- every file path (pid, logs, temporary directories), re-rooted under a directory of the run's.
A directive that is not there to be changed is an error: the file changed shape, and the test
would otherwise run something else than what ships.

`running` starts `nginx -p <dir> -c <conf> -g "daemon off;"` in the foreground, waits until it
answers on its port, and stops it with SIGQUIT (a graceful shutdown) on the way out. As root its
workers switch to the file's `user`, so the run's directory is left traversable for them.
"""

import contextlib
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.services import LOOPBACK, ServiceError, find_program, free_port
from tests.serving import stop_session

NGINX_PACKAGE = "nginx"
CONF = Path("deploy") / "nginx" / "nginx.conf"
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 30.0
POLL_SECONDS = 0.05
# Directives whose first argument is a file or directory of the host's.
PATH_DIRECTIVES = frozenset(
    {
        "pid",
        "error_log",
        "access_log",
        "client_body_temp_path",
        "proxy_temp_path",
        "fastcgi_temp_path",
        "uwsgi_temp_path",
        "scgi_temp_path",
    }
)
# One simple directive on a line: indentation, name, arguments, the semicolon, a comment.
_DIRECTIVE = re.compile(r"^(?P<indent>\s*)(?P<name>\w+)(?P<args>(?:\s+[^;#{}]+)?);(?P<rest>.*)$")


def nginx_binary() -> str:
    return find_program("nginx", NGINX_PACKAGE)


def directives(conf: str) -> list[tuple[str, list[str]]]:
    """Every simple directive of a config (one per line, as the shipped file writes them)."""
    found = []
    for line in conf.splitlines():
        match = _DIRECTIVE.match(line)
        if match:
            found.append((match["name"], match["args"].split()))
    return found


def localized(
    conf: str,
    *,
    root: Path,
    port: int,
    upstreams: Sequence[str],
    upstream_keepalive_timeout: str | None = None,
) -> str:
    """The shipped config with the changes listed in this module's docstring.

    `upstream_keepalive_timeout` changes one more value: only for experiments on the idle-timeout
    order at a time scale a test can afford (see tests/test_replicas.py).
    """
    lines = []
    addresses = list(upstreams)
    in_upstream = False
    changed = {"listen": 0, "server": 0, "paths": 0, "keepalive_timeout": 0}
    for line in conf.splitlines():
        if re.match(r"\s*upstream\s+\w+\s*\{", line):
            in_upstream = True
        elif in_upstream and line.strip() == "}":
            in_upstream = False
        match = _DIRECTIVE.match(line)
        if match is None:
            lines.append(line)
            continue
        name, args = match["name"], match["args"].split()
        if name == "listen":
            args = [f"{LOOPBACK}:{port}", *args[1:]]
            changed["listen"] += 1
        elif in_upstream and name == "server":
            if not addresses:
                raise ServiceError(f"the config has more upstream servers than {list(upstreams)}")
            args = [addresses.pop(0), *args[1:]]
            changed["server"] += 1
        elif in_upstream and name == "keepalive_timeout" and upstream_keepalive_timeout:
            args = [upstream_keepalive_timeout]
            changed["keepalive_timeout"] += 1
        elif name in PATH_DIRECTIVES and args and args[0].startswith("/"):
            path = root / args[0].lstrip("/")
            # nginx creates a temporary directory itself, but not its parents.
            path.parent.mkdir(parents=True, exist_ok=True)
            args = [str(path), *args[1:]]
            changed["paths"] += 1
        else:
            lines.append(line)
            continue
        lines.append(f"{match['indent']}{name} {' '.join(args)};{match['rest']}")
    expected = {
        "listen": 1,
        "server": len(upstreams),
        "paths": len(PATH_DIRECTIVES),
        "keepalive_timeout": 1 if upstream_keepalive_timeout else 0,
    }
    if changed != expected or addresses:
        raise ServiceError(f"the config did not take the changes: made {changed}, meant {expected}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Nginx:
    process: subprocess.Popen[bytes]
    port: int
    root: Path

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.root / "var" / "log" / "nginx" / "access.log"

    @property
    def error_log(self) -> Path:
        return self.root / "var" / "log" / "nginx" / "error.log"

    def log_text(self) -> str:
        parts = []
        for path in (self.root / "nginx.out", self.error_log):
            with contextlib.suppress(OSError):
                parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def running(
    project: Path,
    upstreams: Sequence[str],
    *,
    upstream_keepalive_timeout: str | None = None,
) -> Iterator[Nginx]:
    """The project's deploy/nginx/nginx.conf in front of `upstreams` (host:port), on a free port."""
    binary = nginx_binary()
    root = Path(tempfile.mkdtemp(prefix="test-nginx-"))
    try:
        # As root, nginx's workers run as the config's `user`: they must reach the temporary
        # directories under this one (mkdtemp makes it 0700).
        root.chmod(0o755)
        port = free_port()
        conf = root / "nginx.conf"
        conf.write_text(
            localized(
                (project / CONF).read_text(),
                root=root,
                port=port,
                upstreams=upstreams,
                upstream_keepalive_timeout=upstream_keepalive_timeout,
            )
        )
        with (root / "nginx.out").open("wb") as output:
            process = subprocess.Popen(
                [
                    # Taken down with whoever started it, even by SIGKILL (a CI timeout): setpriv
                    # sets the parent-death signal, then runs nginx in its place.
                    find_program("setpriv", "util-linux"),
                    "--pdeathsig",
                    "SIGTERM",
                    "--",
                    binary,
                    *("-p", str(root), "-c", str(conf), "-g", "daemon off;"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        nginx = Nginx(process, port, root)
        try:
            _wait_until_answering(nginx)
            yield nginx
        finally:
            # SIGQUIT: nginx's graceful shutdown.
            stop_session(process, signal.SIGQUIT)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _wait_until_answering(nginx: Nginx) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not _answers(nginx.port):
        if nginx.process.poll() is not None:
            raise ServiceError(f"nginx exited with {nginx.process.returncode}:\n{nginx.log_text()}")
        if time.monotonic() > deadline:
            raise ServiceError(f"nginx did not answer within {START_TIMEOUT_SECONDS:g} s")
        time.sleep(POLL_SECONDS)


def check_config(project: Path) -> str:
    """`nginx -t` of the localized shipped file; its output (nginx writes it to stderr)."""
    root = Path(tempfile.mkdtemp(prefix="test-nginx-"))
    try:
        conf = root / "nginx.conf"
        upstreams = [
            f"{LOOPBACK}:{free_port()}"
            for name, _ in directives((project / CONF).read_text())
            if name == "server"
        ]
        conf.write_text(
            localized(
                (project / CONF).read_text(), root=root, port=free_port(), upstreams=upstreams
            )
        )
        result = subprocess.run(
            [nginx_binary(), "-t", "-p", str(root), "-c", str(conf)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise ServiceError(f"nginx -t failed:\n{result.stderr}")
        return result.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)
