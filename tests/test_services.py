"""The session's PostgreSQL, MariaDB and Redis servers really answer their own clients."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.services import (
    MARIADB_CLIENT_PACKAGE,
    OWNER_FILE,
    REDIS_PACKAGE,
    MariaDB,
    PortInUseError,
    Postgres,
    Redis,
    ServerProcess,
    ServiceError,
    find_program,
    mariadb,
    mariadb_from_url,
    postgres,
    postgres_from_url,
    redis,
    redis_from_url,
)

CLIENT_TIMEOUT_SECONDS = 60
# Tests that check how this session's own servers are configured cannot hold for one a developer
# named in an environment variable; those say so in the -ra summary instead of failing.
EXTERNAL = {
    name: bool(os.environ.get(name))
    for name in ("TEST_POSTGRES_URL", "TEST_MARIADB_URL", "TEST_REDIS_URL")
}


def client(
    command: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_SECONDS,
        check=False,
    )


def answer(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout.strip()


def table_name(request: pytest.FixtureRequest) -> str:
    # Unique per test, so a server shared with other sessions (TEST_*_URL) sees no collision.
    return f"services_check_{os.getpid()}_{request.node.name.replace('test_', '')}"[:60]


# --- PostgreSQL --------------------------------------------------------------------------------


def psql(url: str, *sql: str) -> subprocess.CompletedProcess[str]:
    """Each statement in its own -c, one session; -XAtq: no psqlrc, bare values, no tags."""
    command = [find_program("psql", "postgresql-client"), "-XAtq", "-v", "ON_ERROR_STOP=1", url]
    for statement in sql:
        command += ["-c", statement]
    return client(command)


def test_postgres_answers_as_the_app_role(postgres_server: Postgres) -> None:
    result = psql(postgres_server.url_for(), "SELECT 1", "SELECT current_user, current_database()")

    assert answer(result).splitlines() == [
        "1",
        f"{postgres_server.user}|{postgres_server.database}",
    ]


def test_postgres_app_role_creates_writes_and_reads_tables(
    postgres_server: Postgres, request: pytest.FixtureRequest
) -> None:
    table = table_name(request)

    # S608: the table name is this test's own, not input.
    result = psql(
        postgres_server.url_for(),
        f"CREATE TABLE {table} (id serial PRIMARY KEY, word text NOT NULL)",
        f"INSERT INTO {table} (word) VALUES ('élan'), ('🐘')",  # noqa: S608
        f"SELECT string_agg(word, ',' ORDER BY id) FROM {table}",  # noqa: S608
        f"DROP TABLE {table}",
    )

    assert answer(result) == "élan,🐘"


def test_postgres_is_configured_for_fast_local_tests(postgres_server: Postgres) -> None:
    if EXTERNAL["TEST_POSTGRES_URL"]:
        pytest.skip("TEST_POSTGRES_URL: the server's configuration is the developer's")
    result = psql(
        postgres_server.url_for(),
        "SHOW listen_addresses",
        "SHOW fsync",
        "SHOW synchronous_commit",
        "SHOW full_page_writes",
        "SHOW max_connections",
        "SHOW server_version_num",
    )

    *settings, version = answer(result).splitlines()
    assert settings == ["127.0.0.1", "off", "off", "off", "300"]
    assert version.startswith("15")


def test_postgres_wants_the_password_over_tcp(postgres_server: Postgres) -> None:
    if EXTERNAL["TEST_POSTGRES_URL"]:
        pytest.skip("TEST_POSTGRES_URL: the server's authentication is the developer's")
    wrong = Postgres(
        postgres_server.host,
        postgres_server.port,
        postgres_server.user,
        "not-the-password",
        postgres_server.database,
    )

    result = psql(wrong.url_for(), "SELECT 1")

    assert result.returncode != 0
    assert "password authentication failed" in result.stderr


def test_postgres_urls_name_the_driver(postgres_server: Postgres) -> None:
    where = f"{postgres_server.host}:{postgres_server.port}/{postgres_server.database}"
    login = f"{postgres_server.user}:{postgres_server.password}"

    assert postgres_server.url_for("asyncpg") == f"postgresql+asyncpg://{login}@{where}"
    assert postgres_server.url_for("psycopg") == f"postgresql+psycopg://{login}@{where}"
    assert postgres_server.url_for() == f"postgresql://{login}@{where}"


# --- MariaDB -----------------------------------------------------------------------------------


def mariadb_client(
    server: MariaDB, sql: str, *, user: str | None = None, password: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The mariadb CLI over TCP, as the app connects; the password via MYSQL_PWD, not argv."""
    command = [
        find_program("mariadb", MARIADB_CLIENT_PACKAGE),
        "--no-defaults",
        "--protocol=TCP",
        f"--host={server.host}",
        f"--port={server.port}",
        f"--user={user or server.user}",
        f"--database={server.database}",
        "--default-character-set=utf8mb4",
        "--batch",
        "--skip-column-names",
        "-e",
        sql,
    ]
    return client(command, env={"MYSQL_PWD": server.password if password is None else password})


def test_mariadb_answers_as_the_app_user(mariadb_server: MariaDB) -> None:
    result = mariadb_client(mariadb_server, "SELECT 1; SELECT CURRENT_USER(), DATABASE();")

    lines = answer(result).splitlines()
    assert lines[0] == "1"
    assert lines[1].split("\t")[0].startswith(f"{mariadb_server.user}@")
    assert lines[1].split("\t")[1] == mariadb_server.database


def test_mariadb_app_user_creates_utf8mb4_tables(
    mariadb_server: MariaDB, request: pytest.FixtureRequest
) -> None:
    table = table_name(request)
    sql = f"""
        SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA
            WHERE SCHEMA_NAME = DATABASE();
        CREATE TABLE {table} (id INT AUTO_INCREMENT PRIMARY KEY, word VARCHAR(20) NOT NULL);
        INSERT INTO {table} (word) VALUES ('🐘');
        SELECT word, CHAR_LENGTH(word), LENGTH(word) FROM {table};
        SELECT ENGINE, TABLE_COLLATION FROM information_schema.TABLES
            WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{table}';
        DROP TABLE {table};
    """  # noqa: S608

    charset, row, table_info = answer(mariadb_client(mariadb_server, sql)).splitlines()

    assert charset == "utf8mb4"
    # A 4-byte character survives: one character, four bytes (utf8mb3 would reject it).
    assert row.split("\t") == ["🐘", "1", "4"]
    engine, collation = table_info.split("\t")
    assert engine == "InnoDB"
    assert collation.startswith("utf8mb4_")


def test_mariadb_is_configured_for_fast_local_tests(mariadb_server: MariaDB) -> None:
    if EXTERNAL["TEST_MARIADB_URL"]:
        pytest.skip("TEST_MARIADB_URL: the server's configuration is the developer's")
    sql = (
        "SELECT @@bind_address, @@max_connections, @@innodb_flush_log_at_trx_commit, "
        "@@innodb_doublewrite, @@character_set_server"
    )

    result = mariadb_client(mariadb_server, sql)

    assert answer(result).split("\t") == ["127.0.0.1", "200", "0", "0", "utf8mb4"]


def test_mariadb_wants_the_password_and_keeps_root_off_tcp(mariadb_server: MariaDB) -> None:
    if EXTERNAL["TEST_MARIADB_URL"]:
        pytest.skip("TEST_MARIADB_URL: the server's accounts are the developer's")

    wrong = mariadb_client(mariadb_server, "SELECT 1", password="not-the-password")  # noqa: S106
    root = mariadb_client(mariadb_server, "SELECT 1", user="root", password="")

    assert wrong.returncode != 0
    assert "Access denied" in wrong.stderr
    assert root.returncode != 0
    assert "Access denied" in root.stderr


def test_mariadb_url_names_the_driver_and_charset(mariadb_server: MariaDB) -> None:
    login = f"{mariadb_server.user}:{mariadb_server.password}"
    where = f"{mariadb_server.host}:{mariadb_server.port}/{mariadb_server.database}"

    assert mariadb_server.url_for("asyncmy") == f"mysql+asyncmy://{login}@{where}?charset=utf8mb4"


# --- Redis -------------------------------------------------------------------------------------


def redis_cli(server: Redis, *command: str) -> subprocess.CompletedProcess[str]:
    return client([find_program("redis-cli", REDIS_PACKAGE), "-u", server.url, *command])


def refuses_connections(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_redis_answers_ping_set_and_get(
    redis_server: Redis, request: pytest.FixtureRequest
) -> None:
    key = table_name(request)

    assert answer(redis_cli(redis_server, "PING")) == "PONG"
    assert answer(redis_cli(redis_server, "SET", key, "cached", "EX", "60")) == "OK"
    assert answer(redis_cli(redis_server, "GET", key)) == "cached"


def test_redis_url_is_database_0_on_loopback(redis_server: Redis) -> None:
    if EXTERNAL["TEST_REDIS_URL"]:
        pytest.skip("TEST_REDIS_URL is used as given")

    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"


def test_redis_goes_down_and_comes_back_on_the_same_port(
    redis_server: Redis, request: pytest.FixtureRequest
) -> None:
    if not redis_server.restartable:
        pytest.skip("TEST_REDIS_URL names a server this session cannot stop")
    key = table_name(request)
    before = answer(redis_cli(redis_server, "INFO", "server"))
    answer(redis_cli(redis_server, "SET", key, "lost on restart"))

    with redis_server.stopped():
        assert refuses_connections(redis_server.host, redis_server.port)
        down = redis_cli(redis_server, "PING")
        assert down.returncode != 0
        assert "Could not connect" in down.stdout + down.stderr

    assert answer(redis_cli(redis_server, "PING")) == "PONG"
    after = answer(redis_cli(redis_server, "INFO", "server"))
    assert f"tcp_port:{redis_server.port}" in after
    # A new process (run_id changes per start) that saved nothing: the key is gone.
    assert run_id(after) != run_id(before)
    assert answer(redis_cli(redis_server, "EXISTS", key)) == "0"


def run_id(info: str) -> str:
    return next(line for line in info.splitlines() if line.startswith("run_id:"))


# --- the machinery, without servers ------------------------------------------------------------


def test_a_missing_program_names_its_debian_package() -> None:
    with pytest.raises(ServiceError, match=r"install the Debian package some-package"):
        find_program("no-such-server-program", "some-package")


def test_a_server_that_dies_at_start_reports_its_log(tmp_path: Path) -> None:
    server = ServerProcess(
        "fake",
        [sys.executable, "-c", "print('fatal: bad config', flush=True); raise SystemExit(3)"],
        log_path=tmp_path / "fake.log",
        is_ready=lambda: False,
    )

    with pytest.raises(ServiceError, match=r"exited with code 3") as error:
        server.start()

    assert "fatal: bad config" in str(error.value)
    assert not isinstance(error.value, PortInUseError)


def test_a_server_that_lost_its_port_says_so(tmp_path: Path) -> None:
    script = "print('bind: Address already in use', flush=True); raise SystemExit(1)"
    server = ServerProcess(
        "fake",
        [sys.executable, "-c", script],
        log_path=tmp_path / "fake.log",
        is_ready=lambda: False,
    )

    with pytest.raises(PortInUseError):
        server.start()


def test_a_server_that_never_answers_times_out_and_is_stopped(tmp_path: Path) -> None:
    script = "import time; print('still starting', flush=True); time.sleep(60)"
    server = ServerProcess(
        "fake",
        [sys.executable, "-c", script],
        log_path=tmp_path / "fake.log",
        is_ready=lambda: False,
        ready_timeout=0.5,
    )

    with pytest.raises(ServiceError, match=r"did not accept connections within 0.5 s") as error:
        server.start()

    assert "still starting" in str(error.value)
    assert not server.running


def test_urls_from_the_environment_name_a_developers_servers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "TEST_POSTGRES_URL", "postgresql+asyncpg://me%40work:p%2Fw@db.internal:6543/shop"
    )
    monkeypatch.setenv("TEST_MARIADB_URL", "mysql+asyncmy://me:pw@[::1]/shop?charset=utf8mb4")
    monkeypatch.setenv("TEST_REDIS_URL", "redis://:secret@cache.internal/2")

    with postgres() as pg, mariadb() as maria, redis() as cache:
        assert pg == Postgres("db.internal", 6543, "me@work", "p/w", "shop")
        assert pg.url_for("asyncpg") == os.environ["TEST_POSTGRES_URL"]
        assert maria == MariaDB("::1", 3306, "me", "pw", "shop")
        assert maria.url_for("asyncmy") == "mysql+asyncmy://me:pw@[::1]:3306/shop?charset=utf8mb4"
        assert (cache.host, cache.port, cache.url) == (
            "cache.internal",
            6379,
            os.environ["TEST_REDIS_URL"],
        )
        assert not cache.restartable
        with pytest.raises(ServiceError, match="does not own"):
            cache.stop()


@pytest.mark.parametrize(
    ("parse", "env_var", "url"),
    [
        (postgres_from_url, "TEST_POSTGRES_URL", "mysql://u:p@h/db"),
        (mariadb_from_url, "TEST_MARIADB_URL", "postgresql://u:p@h/db"),
        (redis_from_url, "TEST_REDIS_URL", "localhost:6379"),
    ],
)
def test_a_url_of_the_wrong_kind_is_refused(
    monkeypatch: pytest.MonkeyPatch, parse: Callable[[], object], env_var: str, url: str
) -> None:
    monkeypatch.setenv(env_var, url)

    with pytest.raises(ServiceError, match=env_var):
        parse()


def test_directories_left_by_killed_sessions_are_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not tmp_path: as root the server runs as its system user, who cannot enter pytest's 0700
    # directories; a private /tmp directory it may pass through stands in for /tmp.
    base = Path(tempfile.mkdtemp())
    base.chmod(0o711)
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    monkeypatch.delenv("TEST_REDIS_URL", raising=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left_behind, in_use, being_set_up = (base / f"test-redis-{n}" for n in "abc")
    for path in (left_behind, in_use, being_set_up):
        path.mkdir()
    (left_behind / OWNER_FILE).write_text(str(dead.pid))
    (in_use / OWNER_FILE).write_text(str(os.getpid()))

    try:
        with redis() as server:
            assert answer(redis_cli(server, "PING")) == "PONG"
        remaining = sorted(path.name for path in base.iterdir())
    finally:
        shutil.rmtree(base)

    # The stale one and this session's own are gone; the others are not this session's to judge.
    assert remaining == ["test-redis-b", "test-redis-c"]
