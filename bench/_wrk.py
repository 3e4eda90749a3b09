"""Load one app with wrk and bench/orders.lua; return what it measured and what it cost wrk."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench._errors import BenchError

SCRIPT = Path(__file__).with_name("orders.lua")
MARKER = "BENCH_RESULT "
THREADS = 1
# Far above any latency the naive app reaches at 32 connections: wrk's default of 2 s would count
# its slow-but-correct answers as timeouts, and drop them from the latency histogram.
TIMEOUT_SECONDS = 30
# Extra time wrk gets to finish and report before the runner gives up on it.
GRACE_SECONDS = 60


@dataclass(frozen=True)
class LoadResult:
    """One wrk run against one app."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]
    wrk_cpu_seconds: float

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise BenchError("wrk is not installed: apt-get install -y wrk")
    return found


def settings(connections: int) -> str:
    """The wrk options as the results file states them."""
    return f"wrk -t{THREADS} -c{connections} -d<duration>s --timeout {TIMEOUT_SECONDS}s --latency"


def load(base_url: str, *, duration: int, connections: int, max_id: int, seed: int) -> LoadResult:
    """Run wrk for `duration` seconds against GET /orders/{random id in 1..max_id}."""
    command = [
        wrk_binary(),
        f"-t{THREADS}",
        f"-c{connections}",
        f"-d{duration}s",
        f"--timeout={TIMEOUT_SECONDS}s",
        "--latency",
        "-s",
        str(SCRIPT),
        base_url,
        "--",
        str(max_id),
        str(seed),
    ]
    # wrk is the only child that ends while it runs, so the children's rusage delta is its own.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=duration + GRACE_SECONDS, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise BenchError(f"wrk did not finish within {duration + GRACE_SECONDS} s") from error
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise BenchError(f"wrk exited with status {result.returncode}: {result.stderr.strip()}")
    lines = [line for line in result.stdout.splitlines() if line.startswith(MARKER)]
    if not lines:
        raise BenchError(f"wrk printed no result line; its output:\n{result.stdout[-2000:]}")
    data = json.loads(lines[-1].removeprefix(MARKER))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return LoadResult(
        requests=int(data["requests"]),
        seconds=float(data["seconds"]),
        rps=float(data["rps"]),
        p50_ms=float(data["p50_ms"]),
        p95_ms=float(data["p95_ms"]),
        p99_ms=float(data["p99_ms"]),
        max_ms=float(data["max_ms"]),
        errors={name: int(count) for name, count in data["errors"].items()},
        wrk_cpu_seconds=cpu,
    )
