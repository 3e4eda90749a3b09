"""Throwaway PostgreSQL, PgBouncer, MariaDB and Redis servers on 127.0.0.1, started on demand.

Each context manager starts one real server on a free loopback port with its data in a temporary
directory, waits until it answers its own protocol, yields a frozen description with its URLs, and
stops it and removes the directory on the way out, whatever happened in between. The session
fixtures at the bottom wrap them, so a server starts only when a test first asks for it.

A developer who already runs a server can point the tests at it instead: TEST_POSTGRES_URL,
TEST_MARIADB_URL (their query strings are ignored), TEST_REDIS_URL (used as given). PgBouncer
always starts here, in front of whichever PostgreSQL the session uses.
"""

import contextlib
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote, unquote, urlsplit

import pytest

LOOPBACK = "127.0.0.1"
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0
# initdb and mariadb-install-db take about a second here; a slow CI disk gets plenty of slack.
SETUP_TIMEOUT_SECONDS = 120.0
POLL_SECONDS = 0.1
LOG_TAIL_LINES = 40
# A port picked free can be taken by someone else before the server binds it: pick again.
PORT_ATTEMPTS = 3
# The role and database the application connects as; the superuser stays socket-only.
APP_NAME = "app"
# Generated projects' suites reset their database and refuse one whose name lacks "test".
DATABASE_NAME = "app_test"

POSTGRES_PACKAGE = "postgresql"
PGBOUNCER_PACKAGE = "pgbouncer"
MARIADB_SERVER_PACKAGE = "mariadb-server"
MARIADB_CLIENT_PACKAGE = "mariadb-client"
REDIS_PACKAGE = "redis-server"
# Debian keeps server programs outside a normal user's PATH.
SYSTEM_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")


class ServiceError(RuntimeError):
    """A test server could not be found, started or reached."""


class PortInUseError(ServiceError):
    """The server exited because its port was taken between picking and binding it."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def find_program(program: str, package: str) -> str:
    """The path of a program, or an error naming the Debian package that provides it.

    A missing server must fail loudly: a silent skip would let CI pass without ever testing
    against a real database.
    """
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *SYSTEM_DIRS])
    found = shutil.which(program, path=search)
    if found is None:
        raise ServiceError(
            f"{program} not found: install the Debian package {package} "
            f"(sudo apt-get install -y {package}), or point the tests at a server you run with "
            "TEST_POSTGRES_URL / TEST_MARIADB_URL / TEST_REDIS_URL"
        )
    return found


def _userinfo(user: str, password: str) -> str:
    return f"{quote(user, safe='')}:{quote(password, safe='')}"


def _netloc(host: str, port: int) -> str:
    # An IPv6 literal needs brackets in a URL.
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class _DatabaseServer:
    """A database server and the password-authenticated user and database the app uses."""

    host: str
    port: int
    user: str
    password: str
    database: str

    # Set by each kind: the URL scheme and what follows the database name.
    SCHEME: ClassVar[str] = ""
    QUERY: ClassVar[str] = ""

    def url_for(self, driver: str = "") -> str:
        """`<scheme>+<driver>://...`, or the plain `<scheme>://...` for ""."""
        scheme = f"{self.SCHEME}+{driver}" if driver else self.SCHEME
        return (
            f"{scheme}://{_userinfo(self.user, self.password)}@{_netloc(self.host, self.port)}"
            f"/{quote(self.database, safe='')}{self.QUERY}"
        )


@dataclass(frozen=True)
class Postgres(_DatabaseServer):
    """PostgreSQL; url_for("asyncpg" | "psycopg" | "").

    One this session started can be taken down and up again (`stopped()`) or frozen (`paused()`),
    for tests of what an application does when its database fails under it.
    """

    SCHEME: ClassVar[str] = "postgresql"
    _server: "ServerProcess | None" = field(default=None, repr=False, compare=False)

    def _own_server(self) -> "ServerProcess":
        if self._server is None:
            raise ServiceError("TEST_POSTGRES_URL names a server this session does not own")
        return self._server

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """Down for the block (a fast shutdown: clients are disconnected), up again after it."""
        server = self._own_server()
        server.stop()
        try:
            yield
        finally:
            server.start()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The postmaster and every backend SIGSTOPped for the block: a hung database.

        The kernel still accepts connections and acknowledges what clients send; nothing answers.
        """
        server = self._own_server()
        server.signal_all(signal.SIGSTOP)
        try:
            yield
        finally:
            server.signal_all(signal.SIGCONT)


@dataclass(frozen=True)
class PgBouncer(_DatabaseServer):
    """PgBouncer in transaction mode in front of a PostgreSQL: the same user, password and
    database names; url_for("asyncpg" | "psycopg" | "") as for PostgreSQL itself."""

    SCHEME: ClassVar[str] = "postgresql"


@dataclass(frozen=True)
class MariaDB(_DatabaseServer):
    """MariaDB with a utf8mb4 database; url_for("asyncmy" | "")."""

    SCHEME: ClassVar[str] = "mysql"
    QUERY: ClassVar[str] = "?charset=utf8mb4"


class ServerProcess:
    """One server process: started, polled until it answers, stopped; restartable in place.

    The command must keep the server in the foreground, so that this object owns its pid.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        log_path: Path,
        is_ready: Callable[[], bool],
        stop_signal: signal.Signals = signal.SIGTERM,
        cwd: Path | None = None,
        ready_timeout: float = READY_TIMEOUT_SECONDS,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.log_path = log_path
        self.is_ready = is_ready
        self.stop_signal = stop_signal
        self.cwd = cwd
        self.ready_timeout = ready_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and return once it answers; raise with its log tail otherwise."""
        if self.running:
            return
        self.stop()  # reaps a process that died on its own
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                # Its own session: a Ctrl-C meant for pytest reaches pytest alone, whose teardown
                # then stops the server in order instead of the server dying mid-test.
                start_new_session=True,
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.ready_timeout
        while True:
            code = self._process.poll()
            if code is not None:
                tail = self.log_tail()
                error = PortInUseError if "already in use" in tail else ServiceError
                raise error(
                    f"{self.name} exited with code {code} before accepting connections\n"
                    f"command: {shlex.join(self.command)}\n--- log tail ---\n{tail}"
                )
            if self.is_ready():
                return
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"{self.name} did not accept connections within {self.ready_timeout:g} s\n"
                    f"command: {shlex.join(self.command)}\n--- log tail ---\n{self.log_tail()}"
                )
            time.sleep(POLL_SECONDS)

    def signal_all(self, signum: signal.Signals) -> None:
        """Signal the server, then every process it forked (PostgreSQL's backends each call
        setsid(), so a signal to the server's process group would miss them)."""
        if self._process is None:
            raise ServiceError(f"{self.name} is not running")
        pid = self._process.pid
        os.kill(pid, signum)
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for child in map(int, children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    def stop(self) -> None:
        """Stop the server cleanly (forcefully after a timeout) and reap it; idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(self.stop_signal)
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
        # Always reaped: pytest turns the ResourceWarning of an unreaped child into an error.
        process.wait()

    def log_tail(self) -> str:
        """The last lines the server wrote since its latest start."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode(errors="replace")
        except OSError as error:
            return f"(no log: {error})"
        return "\n".join(text.splitlines()[-LOG_TAIL_LINES:])


@dataclass(frozen=True)
class Redis:
    """A Redis server; `stop()` / `start()` take the one this session started down and back up."""

    host: str
    port: int
    url: str
    _server: ServerProcess | None = field(default=None, repr=False, compare=False)

    @property
    def restartable(self) -> bool:
        """False for a server named by TEST_REDIS_URL: the tests do not own it."""
        return self._server is not None

    def _own_server(self) -> ServerProcess:
        if self._server is None:
            raise ServiceError("TEST_REDIS_URL names a server this session does not own")
        return self._server

    def stop(self) -> None:
        """Stop the server; connections to its port are refused until `start()`."""
        self._own_server().stop()

    def start(self) -> None:
        """Start it again on the same port (empty: nothing is persisted) and wait for PING."""
        self._own_server().start()

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """Redis down for the block, back up after it even when the block fails."""
        self.stop()
        try:
            yield
        finally:
            self.start()


# --- running as the right user ---------------------------------------------------------------


def _setpriv() -> str:
    return find_program("setpriv", "util-linux")


def _credentials(system_user: str, package: str) -> tuple[list[str], pwd.struct_passwd | None]:
    """setpriv options to run as `system_user` when we are root, and that user's entry.

    PostgreSQL refuses to run as root and MariaDB only does so when told to, so as root every
    server runs as the system user its Debian package creates. Otherwise, as ourselves.
    """
    if os.geteuid() != 0:
        return [], None
    try:
        entry = pwd.getpwnam(system_user)
    except KeyError:
        raise ServiceError(
            f"running as root, the server runs as the system user {system_user}, which the Debian "
            f"package {package} creates; it does not exist: sudo apt-get install -y {package}"
        ) from None
    return ["--reuid", str(entry.pw_uid), "--regid", str(entry.pw_gid), "--init-groups"], entry


def _as_user(credentials: Sequence[str], command: Sequence[str]) -> list[str]:
    """A one-shot command (initdb, install-db) under the server's credentials."""
    if not credentials:
        return list(command)
    return [_setpriv(), *credentials, "--", *command]


def _server_command(
    credentials: Sequence[str], stop_signal: signal.Signals, command: Sequence[str]
) -> list[str]:
    """The long-running server under its credentials, taken down if pytest itself dies.

    setpriv sets the parent-death signal after switching user (a uid change clears it), so a
    pytest killed by a CI timeout or SIGKILL does not leave servers behind. The "parent" is the
    thread that started the server: start servers from pytest's main thread, as fixtures do.
    """
    return [_setpriv(), *credentials, "--pdeathsig", stop_signal.name, "--", *command]


OWNER_FILE = "owner.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _remove_stale_dirs(prefix: str) -> None:
    """Remove what killed sessions left behind (~170 MB each for PostgreSQL plus MariaDB).

    SIGKILL or SIGTERM skips teardown: the servers die with pytest (see _server_command), their
    directories stay. Only a directory whose recorded pytest is gone is removed, never one that
    another live session is using or still setting up.
    """
    for path in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        try:
            pid = int((path / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if not _alive(pid):
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _temp_dir(prefix: str, owner: pwd.struct_passwd | None) -> Iterator[Path]:
    """A private temporary directory, owned by the server's user, removed on the way out.

    It holds the data, the log and the unix socket: mode 0700 keeps everyone else off the
    socket, where the superuser logs in without a password. As root, the server's user must be
    able to pass through TMPDIR (the default /tmp is fine; a 0700 directory of root's is not).
    """
    _remove_stale_dirs(prefix)
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        (path / OWNER_FILE).write_text(str(os.getpid()))
        if owner is not None:
            os.chown(path, owner.pw_uid, owner.pw_gid)
        yield path
    finally:
        # Ignoring errors: a failed removal must not hide the error that ended the session.
        shutil.rmtree(path, ignore_errors=True)


def _run_setup(command: Sequence[str], what: str, cwd: Path) -> None:
    """Run a one-shot setup command; on failure raise with its own output."""
    try:
        result = subprocess.run(
            list(command),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SETUP_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise ServiceError(f"{what} timed out after {SETUP_TIMEOUT_SECONDS:g} s") from error
    if result.returncode != 0:
        raise ServiceError(
            f"{what} failed with exit code {result.returncode}\ncommand: {shlex.join(command)}\n"
            f"--- output ---\n{result.stdout[-4000:]}{result.stderr[-4000:]}"
        )


def _answers(command: Sequence[str]) -> bool:
    """True when a client command exits 0 (used to poll readiness)."""
    try:
        result = subprocess.run(
            list(command),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


@contextlib.contextmanager
def _running(make: Callable[[int], ServerProcess]) -> Iterator[tuple[ServerProcess, int]]:
    """Start the server built for a free port, picking another if that one was just taken."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = free_port()
        server = make(port)
        try:
            server.start()
        except PortInUseError:
            if attempt == PORT_ATTEMPTS:
                raise
            continue
        try:
            yield server, port
        finally:
            server.stop()
        return


def _parse_url(
    env_var: str, schemes: Sequence[str], default_port: int
) -> tuple[str, int, str, str, str]:
    """Host, port, user, password, database of a URL given in an environment variable."""
    url = os.environ[env_var]
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in schemes or not parts.hostname:
        raise ServiceError(
            f"{env_var}={url!r}: expected {schemes[0]}://user:password@host:port/database"
        )
    return (
        parts.hostname,
        parts.port or default_port,
        unquote(parts.username or ""),
        unquote(parts.password or ""),
        unquote(parts.path.lstrip("/")),
    )


# --- PostgreSQL --------------------------------------------------------------------------------


def postgres_bindir() -> Path:
    """The directory of Debian's PostgreSQL server programs (initdb, postgres, pg_isready).

    The version-less wrappers in /usr/bin pick a cluster through postgresql-common; the servers
    started here have none, so the real programs are used.
    """
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=False
        )
        if result.returncode == 0 and result.stdout.strip():
            candidates.append(Path(result.stdout.strip()))
    candidates.append(Path("/usr/lib/postgresql/15/bin"))
    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    searched = ", ".join(map(str, candidates))
    raise ServiceError(
        f"PostgreSQL server programs (initdb, postgres) not found in {searched}: "
        f"install the Debian package {POSTGRES_PACKAGE} "
        f"(sudo apt-get install -y {POSTGRES_PACKAGE}), or set TEST_POSTGRES_URL"
    )


def postgres_from_url(env_var: str = "TEST_POSTGRES_URL") -> Postgres:
    """The server named by `env_var` (postgresql[+driver]://user:password@host:port/db)."""
    host, port, user, password, database = _parse_url(env_var, ("postgresql", "postgres"), 5432)
    return Postgres(host, port, user, password, database)


@contextlib.contextmanager
def postgres(*, from_env: bool = True, max_connections: int = 300) -> Iterator[Postgres]:
    """A PostgreSQL server for as long as the block runs (or the one TEST_POSTGRES_URL names,
    unless `from_env` is False: a test that stops or freezes its server needs one of its own).

    `max_connections` applies to a server started here only.
    """
    if from_env and os.environ.get("TEST_POSTGRES_URL"):
        yield postgres_from_url()
        return
    bindir = postgres_bindir()
    credentials, owner = _credentials("postgres", POSTGRES_PACKAGE)
    password = secrets.token_hex(16)
    with _temp_dir("test-postgres-", owner) as tmp:
        data = tmp / "data"
        # trust on the socket (private to its directory) for the setup below, passwords over TCP
        # for everything else, as an application meets it. --no-sync: a throwaway cluster.
        _run_setup(
            _as_user(
                credentials,
                [
                    str(bindir / "initdb"),
                    f"--pgdata={data}",
                    "--username=postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                    "--no-instructions",
                ],
            ),
            "initdb",
            cwd=tmp,
        )

        def server_for(port: int) -> ServerProcess:
            command = [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(tmp),
                "-c",
                f"listen_addresses={LOOPBACK}",
                # Durability buys nothing in a throwaway database and costs test time.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                # Room for several app workers' pools at once (see FACTS: workers x pool size);
                # the benchmark asks for more, for all its apps' pools of 20 side by side.
                "-c",
                f"max_connections={max_connections}",
            ]
            return ServerProcess(
                "PostgreSQL",
                # SIGINT is PostgreSQL's fast shutdown: it disconnects clients instead of waiting.
                _server_command(credentials, signal.SIGINT, command),
                log_path=tmp / "postgres.log",
                is_ready=lambda: _answers(
                    [str(bindir / "pg_isready"), "-q", "-h", LOOPBACK, "-p", str(port), "-t", "1"]
                ),
                stop_signal=signal.SIGINT,
                cwd=tmp,
            )

        with _running(server_for) as (server, port):
            # Plain identifiers and a hex password: nothing here needs quoting.
            superuser = [
                str(bindir / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(tmp),
                "-p",
                str(port),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ]
            _run_setup(
                [
                    *superuser,
                    "-c",
                    # CREATEDB: a suite may give each of its workers a database of its own.
                    f"CREATE ROLE {APP_NAME} LOGIN CREATEDB PASSWORD '{password}'",
                    # CREATE DATABASE cannot run in a transaction: a -c of its own.
                    "-c",
                    f"CREATE DATABASE {DATABASE_NAME} OWNER {APP_NAME}",
                ],
                "creating the PostgreSQL role and database",
                cwd=tmp,
            )
            yield Postgres(LOOPBACK, port, APP_NAME, password, DATABASE_NAME, server)


# --- PgBouncer -----------------------------------------------------------------------------------


def pgbouncer_ini(postgres: Postgres, port: int, tmp: Path) -> str:
    """The configuration: what a production PgBouncer in front of this service needs, no more."""
    return "\n".join(
        [
            "[databases]",
            # Any database name the client asks for, on this PostgreSQL: suites that create a
            # database per test reach theirs too.
            f"* = host={postgres.host} port={postgres.port}",
            "[pgbouncer]",
            f"listen_addr = {LOOPBACK}",
            f"listen_port = {port}",
            # TCP only; no unix socket, log file or pid file outside the temporary directory.
            "unix_socket_dir =",
            "pidfile =",
            "logfile =",
            # Clients log in with the app's password, checked against userlist.txt, which also
            # gives PgBouncer that password to log in to PostgreSQL (scram-sha-256 there too).
            "auth_type = scram-sha-256",
            f"auth_file = {tmp / 'userlist.txt'}",
            # What the issue is about: a server connection is a client's for one transaction only.
            "pool_mode = transaction",
            # Room for several app workers' pools at once, and fewer server connections than
            # their clients: a client's consecutive transactions land on different server
            # sessions, the case that breaks prepared statements and session settings.
            "max_client_conn = 500",
            "default_pool_size = 4",
            # Nothing in the way of the tests' own hang guards.
            "query_wait_timeout = 30",
            "",
        ]
    )


@contextlib.contextmanager
def pgbouncer(postgres: Postgres) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode in front of `postgres` for as long as the block runs.

    Debian 12's 1.18 keeps no prepared statements across transactions and refuses startup
    parameters it does not know: what each driver's DB__PGBOUNCER settings are tested against.
    """
    program = find_program("pgbouncer", PGBOUNCER_PACKAGE)
    isready = str(postgres_bindir() / "pg_isready")
    # PgBouncer refuses to run as root; Debian's package runs it as postgres.
    credentials, owner = _credentials("postgres", PGBOUNCER_PACKAGE)
    with _temp_dir("test-pgbouncer-", owner) as tmp:
        # A plain password: PgBouncer needs it to log in to PostgreSQL with SCRAM on the
        # client's behalf. The file is the server's alone, in a 0700 directory.
        userlist = tmp / "userlist.txt"
        userlist.write_text(f'"{postgres.user}" "{postgres.password}"\n')
        if owner is not None:
            os.chown(userlist, owner.pw_uid, owner.pw_gid)
        userlist.chmod(0o600)

        def server_for(port: int) -> ServerProcess:
            ini = tmp / "pgbouncer.ini"
            ini.write_text(pgbouncer_ini(postgres, port, tmp))
            if owner is not None:
                os.chown(ini, owner.pw_uid, owner.pw_gid)
            return ServerProcess(
                "PgBouncer",
                # SIGINT is PgBouncer's safe shutdown; it logs to stderr without a logfile.
                _server_command(credentials, signal.SIGINT, [program, str(ini)]),
                log_path=tmp / "pgbouncer.log",
                # pg_isready counts an answer to the startup packet (an auth request) as ready.
                is_ready=lambda: _answers(
                    [
                        isready,
                        "-q",
                        "-h",
                        LOOPBACK,
                        "-p",
                        str(port),
                        "-U",
                        postgres.user,
                        "-d",
                        postgres.database,
                        "-t",
                        "1",
                    ]
                ),
                stop_signal=signal.SIGINT,
                cwd=tmp,
            )

        with _running(server_for) as (_, port):
            yield PgBouncer(LOOPBACK, port, postgres.user, postgres.password, postgres.database)


# --- MariaDB -----------------------------------------------------------------------------------


def mariadb_from_url(env_var: str = "TEST_MARIADB_URL") -> MariaDB:
    """The server named by `env_var` (mysql[+driver]://user:password@host:port/db)."""
    host, port, user, password, database = _parse_url(env_var, ("mysql", "mariadb"), 3306)
    return MariaDB(host, port, user, password, database)


@contextlib.contextmanager
def mariadb() -> Iterator[MariaDB]:
    """A MariaDB server for as long as the block runs (or the one TEST_MARIADB_URL names)."""
    if os.environ.get("TEST_MARIADB_URL"):
        yield mariadb_from_url()
        return
    mariadbd = find_program("mariadbd", MARIADB_SERVER_PACKAGE)
    install_db = find_program("mariadb-install-db", MARIADB_SERVER_PACKAGE)
    admin = find_program("mariadb-admin", MARIADB_CLIENT_PACKAGE)
    client = find_program("mariadb", MARIADB_CLIENT_PACKAGE)
    credentials, owner = _credentials("mysql", MARIADB_SERVER_PACKAGE)
    password = secrets.token_hex(16)
    with _temp_dir("test-mariadb-", owner) as tmp:
        data = tmp / "data"
        sock = tmp / "mariadb.sock"
        # --no-defaults everywhere: /etc/mysql and ~/.my.cnf describe the system's server (its
        # datadir, socket and port), which must not leak into this one.
        # "normal" gives root@localhost no password and no unix_socket check, so the setup below
        # works for whichever OS user runs the tests.
        _run_setup(
            _as_user(
                credentials,
                [
                    install_db,
                    "--no-defaults",
                    f"--datadir={data}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    "--skip-name-resolve",
                ],
            ),
            "mariadb-install-db",
            cwd=tmp,
        )

        def server_for(port: int) -> ServerProcess:
            command = [
                mariadbd,
                "--no-defaults",
                f"--datadir={data}",
                f"--socket={sock}",
                f"--port={port}",
                f"--bind-address={LOOPBACK}",
                "--skip-networking=0",
                f"--pid-file={tmp / 'mariadb.pid'}",
                f"--tmpdir={tmp}",
                # Clients are told apart by IP, not by reverse DNS (slow, and root@<hostname>).
                "--skip-name-resolve",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_unicode_ci",
                "--max-connections=200",
                # Durability buys nothing in a throwaway database and costs test time.
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-doublewrite=0",
            ]
            return ServerProcess(
                "MariaDB",
                _server_command(credentials, signal.SIGTERM, command),
                log_path=tmp / "mariadb.log",
                # ping exits 0 once the server answers, even if it denies the (absent) user.
                is_ready=lambda: _answers(
                    [
                        admin,
                        "--no-defaults",
                        "--protocol=TCP",
                        f"--host={LOOPBACK}",
                        f"--port={port}",
                        "--connect-timeout=1",
                        "ping",
                    ]
                ),
                cwd=tmp,
            )

        with _running(server_for) as (_, port):
            # Root keeps only root@localhost, which with --skip-name-resolve is the socket alone:
            # install-db also made passwordless root@127.0.0.1, ::1 and @<hostname>, reachable
            # over TCP by anyone on the machine. Constants and a hex password: nothing to escape.
            setup_sql = "\n".join(
                [
                    "DELETE FROM mysql.global_priv WHERE User = 'root' AND Host <> 'localhost';",
                    "DELETE FROM mysql.proxies_priv WHERE Host <> 'localhost';",
                    "FLUSH PRIVILEGES;",
                    f"CREATE DATABASE {DATABASE_NAME}"
                    " CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;",
                    f"CREATE USER '{APP_NAME}'@'%' IDENTIFIED BY '{password}';",
                    f"GRANT ALL PRIVILEGES ON {DATABASE_NAME}.* TO '{APP_NAME}'@'%';",
                ]
            )
            _run_setup(
                [client, "--no-defaults", f"--socket={sock}", "--user=root", "-e", setup_sql],
                "creating the MariaDB user and database",
                cwd=tmp,
            )
            yield MariaDB(LOOPBACK, port, APP_NAME, password, DATABASE_NAME)


# --- Redis -------------------------------------------------------------------------------------


def redis_ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a Redis server answers PING on host:port (RESP over a plain socket)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            # +PONG; an error such as -LOADING means not ready yet.
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_from_url(env_var: str = "TEST_REDIS_URL") -> Redis:
    """The server named by `env_var`, its URL kept as given (password, db index)."""
    host, port, _, _, _ = _parse_url(env_var, ("redis", "rediss"), 6379)
    return Redis(host, port, os.environ[env_var])


@contextlib.contextmanager
def redis() -> Iterator[Redis]:
    """A Redis server for as long as the block runs (or the one TEST_REDIS_URL names)."""
    if os.environ.get("TEST_REDIS_URL"):
        yield redis_from_url()
        return
    redis_server = find_program("redis-server", REDIS_PACKAGE)
    credentials, owner = _credentials("redis", REDIS_PACKAGE)
    with _temp_dir("test-redis-", owner) as tmp:

        def server_for(port: int) -> ServerProcess:
            command = [
                redis_server,
                "--port",
                str(port),
                "--bind",
                LOOPBACK,
                # A cache in tests: nothing saved, so a restart comes back empty.
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp),
                "--daemonize",
                "no",
            ]
            return ServerProcess(
                "Redis",
                _server_command(credentials, signal.SIGTERM, command),
                log_path=tmp / "redis.log",
                is_ready=lambda: redis_ping(LOOPBACK, port),
                cwd=tmp,
            )

        with _running(server_for) as (server, port):
            yield Redis(LOOPBACK, port, f"redis://{LOOPBACK}:{port}/0", server)


# --- pytest fixtures ---------------------------------------------------------------------------
# Session-scoped, so each server starts at most once per session, and only if a test asks for it.
# Register them for a suite with `pytest_plugins = ["tests.services"]` in its conftest.py.


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """A PostgreSQL server shared by the whole session."""
    with postgres() as server:
        yield server


@pytest.fixture(scope="session")
def pgbouncer_server(postgres_server: Postgres) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode in front of the session's PostgreSQL."""
    with pgbouncer(postgres_server) as server:
        yield server


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDB]:
    """A MariaDB server shared by the whole session."""
    with mariadb() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    """A Redis server shared by the whole session; a test that stops it must start it again."""
    with redis() as server:
        yield server
