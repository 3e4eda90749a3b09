"""The benchmark still runs end to end (its smoke mode): renders, seeds, serves, compares, loads.

It checks that the five apps return the same documents, that the projects make one query per
document (the cache-hit one none, every request a hit); it asserts nothing about speed (that is
the full benchmark's job, on a quiet machine).
"""

import sys

import pytest

from tests.conftest import REPO, run

pytestmark = pytest.mark.slow


def test_bench_smoke_runs_and_reports_every_variant() -> None:
    result = run([sys.executable, "-m", "bench", "--smoke"], REPO)

    report = (REPO / "bench" / "results" / "SMOKE.md").read_text()
    labels = (
        "| naive:",
        "| template defaults:",
        "| template: asyncpg",
        "| template defaults, Redis cache hit:",
        "| limit:",
    )
    for label in labels:
        assert label in report, label
    assert "Traceback" not in result.stderr
