"""The benchmarks still run end to end (their smoke modes): render, seed, serve, compare, load.

`bench` (one row of each kind) checks that the apps return the same documents,
that the projects make one query per document (the cache-hit ones none, every request a hit);
`bench.redis_outage` that the cache-hit project answers every request with 200 while its Redis
is up, refuses and hangs; `bench.admission` that overload gets only 200s and 503s. No test
asserts anything about speed (that is the full runs' job, on a quiet machine).
"""

import sys

import pytest

from tests.commands import REPO, run

pytestmark = pytest.mark.slow


# One row of each kind the runner serves differently: a reference app of each sort, a project on
# the database path, a cache-hit project (warmed, checked against Redis), one traced (the OTLP
# sink), replicas behind nginx, two workers, another server. The other rows are the same kinds
# with other answers (their renders are the matrix's, tests/test_generated.py): running them all
# took the smoke from ~90 to ~205 s of a suite that must stay under 15 minutes.
SMOKE_ROWS = {
    "naive": "| naive:",
    "default": "| template defaults:",
    "default-traced": "| template defaults, traces exported:",
    "default-replicas": "| template defaults, two replicas behind nginx:",
    "default-2-workers": "| template defaults, two workers:",
    "cache-hit": "| template defaults, Redis cache hit:",
    "uvicorn-hit": "| template defaults, Redis cache hit, server uvicorn:",
    "plain-fastapi-hit": "| plain FastAPI:",
    "limit": "| limit:",
}


def test_bench_smoke_runs_and_reports_each_kind_of_row() -> None:
    only = ",".join(SMOKE_ROWS)
    result = run([sys.executable, "-m", "bench", "--smoke", "--only", only], REPO)

    report = (REPO / "bench" / "results" / "SMOKE.md").read_text()
    for label in SMOKE_ROWS.values():
        assert label in report, label
    # The comparisons each kind feeds: the plain hit, two workers, the servers' table.
    assert "the plain FastAPI hit" in report
    assert "With 2 workers instead of one" in report
    assert "| cache hit | uvicorn |" in report
    assert "Traceback" not in result.stderr


def test_redis_outage_smoke_answers_every_request_in_every_state() -> None:
    # run() fails the test unless the command exits 0: every request of every state was a 200
    # (and, with Redis up, a cache hit).
    result = run([sys.executable, "-m", "bench.redis_outage", "--smoke"], REPO)

    report = (REPO / "bench" / "results" / "REDIS_OUTAGE_SMOKE.md").read_text()
    for state in ("up", "refused", "hanging"):
        assert f"| {state} |" in report, state
    assert "Traceback" not in result.stderr


def test_admission_smoke_answers_only_200_or_503() -> None:
    # run() fails the test unless the command exits 0: no answer but 200 or 503, in any row.
    result = run([sys.executable, "-m", "bench.admission", "--smoke"], REPO)

    report = (REPO / "bench" / "results" / "ADMISSION_SMOKE.md").read_text()
    for setting in ("as shipped", "admission off"):
        for connections in (64, 192):
            assert f"| {setting} | {connections} |" in report, (setting, connections)
    assert "Traceback" not in result.stderr


def test_layers_smoke_measures_every_layer() -> None:
    # run() fails the test unless the command exits 0: every variant of the app answered its
    # requests with the cached document.
    result = run([sys.executable, "-m", "bench.layers", "--smoke"], REPO)

    report = (REPO / "bench" / "results" / "LAYERS_SMOKE.md").read_text()
    for layer in ("RequestIdMiddleware", "access log line", "circuit breaker"):
        assert f"| {layer}" in report, layer
    # And again in the served process: a server per variant, each cut applied (the runner stops
    # when a server does not say so) and loaded by wrk.
    served = report[report.index("## In the served process") :]
    for layer in ("RequestIdMiddleware", "access log line", "circuit breaker", "FastAPI"):
        assert f"| {layer}" in served, layer
    assert "Traceback" not in result.stderr
