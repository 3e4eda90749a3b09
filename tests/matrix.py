"""The answer sets whose renderings run their whole toolchain, each there for a stated reason.

tests/test_generated.py runs ruff, mypy --strict and the project's own suite on every one of
them; tests/test_update.py proves that its updated and switched projects are, file for file, one
of these renderings, so their gates are these gates (run once, not once per test file).
"""

from tests.conftest import choice_values

# Answers other than the defaults wherever a question has choices, on SQLite so that the updated
# projects need no database server: the project every update test starts from or ends at.
NON_DEFAULT_ANSWERS = {
    "project_name": "Orders API",
    "description": "Orders, updated for years.",
    "python_version": "3.12",
    "server": "granian",
    "json_encoder": "msgspec",
    "db_driver": "sqlalchemy-aiosqlite",
    "cache": "memory",
    # metrics and tracing keep their defaults: the release projects the update tests start from
    # predate both questions, and `copier update` gives them the defaults (the CHANGELOG's
    # Upgrading note). metrics=none and tracing=none are switches below.
}

# A project with every switchable feature on a non-default value, then each switch the generated
# README documents (`copier update --defaults --vcs-ref=:current: -d cache=redis`): one that swaps
# a cache for another, one that adds a worker, one that swaps the server, one that removes the
# database and everything on it.
SWITCH_BASE = {
    "db_driver": "sqlalchemy-aiosqlite",
    "cache": "memory",
    "queue": "none",
    "server": "gunicorn",
}
SWITCHES = [
    ("cache", "redis"),
    ("queue", "arq"),
    ("server", "granian"),
    ("metrics", "none"),
    ("tracing", "none"),
    ("db_driver", "none"),
]

# Answers that change only deployment files, which no gate of the project runs: switched on a
# project without a database (SQLite projects get no Kubernetes manifests), each allowed to change
# only its own files and the README. tests/test_update.py switches each there and back; the
# project's Python is then the matrix's DEPLOY_SWITCH_BASE rendering, so no other project's whole
# toolchain has to run for them (test_kubernetes.py and test_ci_config.py check the files).
DEPLOY_SWITCH_BASE = {"db_driver": "none"}
DEPLOY_SWITCHES: dict[tuple[str, str], tuple[str, ...]] = {
    ("kubernetes", "none"): ("deploy/kubernetes/",),
    ("ci", "gitlab"): (".github/", ".gitlab-ci.yml"),
}

# - every database server driver, with the default server, encoder, cache and queue, except
#   Celery on raw asyncpg and on MariaDB (each database family once with each worker);
# - every server x json_encoder pair on SQLite, each with one of the cache x queue pairs that the
#   server databases' renderings do not run (those run Redis with arq and with Celery), so all
#   nine pairs run somewhere (the encoder changes the orders routes; the pairs, the wiring); the
#   two left over get the cheapest pair (no cache, no queue), not a third and fourth worker
#   suite on SQLite (~100 s each under CI's load: issue 15 had to fit in the budget);
# - every other Python version on one of those renderings with its whole stack (a database or
#   Redis server and a worker), rather than on a rendering of its own: two suites fewer, each
#   ~100 s under CI's load (issue 15 had to fit in the 15-minute budget). The defaults run on
#   the default Python;
# - what the update tests end at: the non-default project and each switched one.
CELERY_DRIVERS = {"asyncpg", "sqlalchemy-asyncmy"}
CACHE_QUEUE_PAIRS = [
    {"cache": cache, "queue": queue}
    for cache in choice_values("cache")
    for queue in choice_values("queue")
]
ON_SERVER_DATABASES = [{"cache": "redis", "queue": "arq"}, {"cache": "redis", "queue": "celery"}]
SERVER_ENCODER_PAIRS = [
    {"server": server, "json_encoder": encoder}
    for server in choice_values("server")
    for encoder in choice_values("json_encoder")
]
UPDATED_ANSWERS = [
    NON_DEFAULT_ANSWERS,
    *({**SWITCH_BASE, question: value} for question, value in SWITCHES),
]
SQLITE_PAIRS = [pair for pair in CACHE_QUEUE_PAIRS if pair not in ON_SERVER_DATABASES]
SQLITE_PAIRS += [{"cache": "none", "queue": "none"}] * (
    len(SERVER_ENCODER_PAIRS) - len(SQLITE_PAIRS)
)

# Where each other Python version runs: PostgreSQL through psycopg with Redis and arq, and SQLite
# with the memory cache and arq (on Redis).
PYTHON_VERSION_HOSTS = dict(
    zip(
        choice_values("python_version")[1:],
        [
            {"db_driver": "sqlalchemy-psycopg"},
            {"server": "gunicorn", "json_encoder": "msgspec", "db_driver": "sqlalchemy-aiosqlite"},
        ],
        strict=True,
    )
)


def _on_its_python(answers: dict[str, str]) -> dict[str, str]:
    for version, host in PYTHON_VERSION_HOSTS.items():
        if answers.items() >= host.items():
            return {**answers, "python_version": version}
    return answers


COMBINATIONS = [
    _on_its_python(answers)
    for answers in [
        *(
            {"db_driver": driver, **({"queue": "celery"} if driver in CELERY_DRIVERS else {})}
            for driver in choice_values("db_driver")
            # SQLite runs nine times below, its defaults first.
            if driver != "sqlalchemy-aiosqlite"
        ),
        *(
            {**server_encoder, "db_driver": "sqlalchemy-aiosqlite", **cache_queue}
            for server_encoder, cache_queue in zip(SERVER_ENCODER_PAIRS, SQLITE_PAIRS, strict=True)
        ),
    ]
] + UPDATED_ANSWERS


def combination_id(answers: dict[str, str]) -> str:
    """A test id that names the answer set (the non-default one by its purpose, not its text)."""
    if answers == NON_DEFAULT_ANSWERS:
        return "non-default-answers"
    return "-".join(answers.values())


def sqlite_rendering(server: str) -> dict[str, str]:
    """A rendering the matrix runs anyway, with this server, on SQLite, orjson and metrics on:
    served by tests that give every test a database of its own in tmp_path."""
    return next(
        combination
        for combination in COMBINATIONS
        if combination.get("server") == server
        and combination.get("db_driver") == "sqlalchemy-aiosqlite"
        and combination.get("json_encoder") == "orjson"
        and combination.get("metrics", "prometheus") == "prometheus"
    )


# The suites that run as on a fresh machine: neither DATABASE_URL nor REDIS_URL, and no database
# or Redis program on PATH, so each project's own fallback (a throwaway PostgreSQL and Valkey
# from its dev group's wheels) is what they run against. The defaults (SQLAlchemy on asyncpg, the
# Redis cache, arq) and raw asyncpg with Celery: both PostgreSQL driver families, both workers.
# Every other suite gets the template's servers, as a developer's DATABASE_URL would.
LOCAL_SERVERS = [
    {"db_driver": "sqlalchemy-asyncpg"},
    {"db_driver": "asyncpg", "queue": "celery"},
]
