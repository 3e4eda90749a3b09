"""Schemathesis against the real served app: no server error, every response as documented.

Each rendering here is served by `uv run serve` on its real database, with partner APIs that
answer, and fuzzed from the OpenAPI document it publishes: examples, boundary values, random and
invalid input (bounded examples per operation, a fixed seed), then stateful sequences that feed
one response into the next request (POST /orders, then GET it). Every response must be no 5xx,
and match its operation's documented status codes, content type, headers and schema; the routes
that pass database-built bytes through are held to their declared response_model this way, and
every error to the Problem schema under application/problem+json, and no error body may carry
internals (tests/fuzz_checks.py).

Renderings: every database driver on the default encoder, and the other two encoders on SQLite.
(db_driver=none publishes no operation: its probes stay out of the document.)
"""

import json
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.commands import REPO, run
from tests.conftest import Render, choice_values
from tests.fuzz_checks import internals_in
from tests.matrix import COMBINATIONS, combination_id
from tests.serving import answers_of, migrated_and_seeded, services_env, serving

pytestmark = pytest.mark.slow

SCHEMATHESIS = str(Path(sys.executable).with_name("st"))
EXAMPLES_PER_OPERATION = 30
SEED = 1
# Hang guards, not speed assertions: a slow answer on a loaded machine must not read as a 5xx.
PARTNER_TIMEOUT_SECONDS = "10"
REQUEST_TIMEOUT_SECONDS = "30"
# Every check that applies to this API, except positive_data_acceptance: a POST /orders for a
# customer_id that does not exist is schema-valid and rightly a 422, which that check forbids.
EXCLUDED_CHECKS = "positive_data_acceptance"


def _first(**answers: str) -> dict[str, str]:
    return next(
        combination
        for combination in COMBINATIONS
        if all(combination.get(key) == value for key, value in answers.items())
    )


FUZZED = [
    *(
        _first(db_driver=driver)
        for driver in choice_values("db_driver")
        if driver not in {"sqlalchemy-aiosqlite", "none"}
    ),
    *(
        _first(db_driver="sqlalchemy-aiosqlite", json_encoder=encoder)
        for encoder in choice_values("json_encoder")
    ),
]


class _Partner(BaseHTTPRequestHandler):
    """POST /quote of the shipping and tax partners, answered from the question."""

    answer: Callable[[dict[str, Any]], dict[str, Any]]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.dumps(self.answer(json.loads(self.rfile.read(length)))).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class _Shipping(_Partner):
    @staticmethod
    def answer(question: dict[str, Any]) -> dict[str, Any]:
        return {"shipping_cents": 300 + 25 * question["weight_units"], "carrier": "Fuzz Post"}


class _Tax(_Partner):
    @staticmethod
    def answer(question: dict[str, Any]) -> dict[str, Any]:
        return {"tax_cents": question["amount_cents"] * 8 // 100}


@pytest.fixture(scope="module")
def partner_env() -> Iterator[dict[str, str]]:
    """PARTNERS__* of two loopback partner APIs that always answer."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), handler) for handler in (_Shipping, _Tax)]
    threads = [threading.Thread(target=server.serve_forever, daemon=True) for server in servers]
    for thread in threads:
        thread.start()
    shipping, tax = (f"http://127.0.0.1:{server.server_address[1]}" for server in servers)
    try:
        yield {
            "PARTNERS__SHIPPING_URL": shipping,
            "PARTNERS__TAX_URL": tax,
            "PARTNERS__SHIPPING_TIMEOUT": PARTNER_TIMEOUT_SECONDS,
            "PARTNERS__TAX_TIMEOUT": PARTNER_TIMEOUT_SECONDS,
        }
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.mark.parametrize("answers", FUZZED, ids=combination_id)
def test_fuzzing_finds_no_server_error_and_no_undocumented_response(
    request: pytest.FixtureRequest,
    render: Render,
    synced: Callable[[Path], Path],
    partner_env: dict[str, str],
    tmp_path: Path,
    answers: dict[str, str],
) -> None:
    project = synced(render(**answers))
    env = {**services_env(request, project), **partner_env, "WEB_CONCURRENCY": "1"}
    if answers_of(project)["db_driver"] == "sqlalchemy-aiosqlite":
        env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'fuzz.db'}"
    migrated_and_seeded(project, env, orders=20, items=3)

    with serving(project, env, tmp_path / "serve.log") as served:
        result = run(
            [
                SCHEMATHESIS,
                "run",
                f"{served.base_url}/openapi.json",
                "--checks",
                "all",
                "--exclude-checks",
                EXCLUDED_CHECKS,
                "--max-examples",
                str(EXAMPLES_PER_OPERATION),
                "--seed",
                str(SEED),
                "--request-timeout",
                REQUEST_TIMEOUT_SECONDS,
                "--no-color",
            ],
            tmp_path,
            # The template's own checks (tests/fuzz_checks.py) run with schemathesis's.
            env={"SCHEMATHESIS_HOOKS": "tests.fuzz_checks", "PYTHONPATH": str(REPO)},
            check=False,
        )

    assert result.returncode == 0, (
        f"{result.stdout[-8000:]}\n--- serve log ---\n" + (served.log_text()[-4000:])
    )


def test_the_internals_check_finds_an_exception_in_a_body() -> None:
    # What a handler that answered str(error) would send: the check must see it.
    leaked = (
        '{"detail": "(sqlalchemy.dialects.postgresql.asyncpg.Error) <class \'asyncpg.exceptions.'
        "QueryCanceledError'>: canceling statement\\n[SQL: SELECT 1]\"}"
    )
    assert internals_in(leaked)
    assert internals_in('Traceback (most recent call last):\n  File "/srv/app/db.py", line 1')
    assert internals_in('{"detail": "The database is unavailable; retry shortly."}') == []
