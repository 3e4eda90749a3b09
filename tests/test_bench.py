"""The benchmarks still run end to end (their smoke modes): render, seed, serve, compare, load.

`bench` checks that every app (each server, one and two workers) returns the same documents,
that the projects make one query per document (the cache-hit ones none, every request a hit);
`bench.redis_outage` that the cache-hit project answers every request with 200 while its Redis
is up, refuses and hangs; `bench.admission` that overload gets only 200s and 503s. No test
asserts anything about speed (that is the full runs' job, on a quiet machine).
"""

import sys

import pytest

from tests.commands import REPO, run

pytestmark = pytest.mark.slow


def test_bench_smoke_runs_and_reports_every_variant() -> None:
    result = run([sys.executable, "-m", "bench", "--smoke"], REPO)

    report = (REPO / "bench" / "results" / "SMOKE.md").read_text()
    labels = (
        "| naive:",
        "| template defaults:",
        "| template defaults, server uvicorn:",
        "| template defaults, server granian:",
        "| template defaults, two workers:",
        "| template defaults, traces exported:",
        "| template defaults, two replicas behind nginx:",
        "| template defaults, Redis cache hit, traces exported:",
        "| template: asyncpg",
        "| template defaults, Redis cache hit:",
        "| template defaults, Redis cache hit, server uvicorn:",
        "| template defaults, Redis cache hit, server granian:",
        "| template defaults, Redis cache hit, two workers:",
        "| plain FastAPI:",
        "| limit:",
    )
    for label in labels:
        assert label in report, label
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
    assert "Traceback" not in result.stderr
