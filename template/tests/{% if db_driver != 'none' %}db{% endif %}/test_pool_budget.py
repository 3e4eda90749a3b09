"""Pool size per process comes from the connection budget; a budget that cannot fit stops serve."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.pool_budget import PoolBudgetError, pool_size_for

SERVE = Path(sys.executable).with_name("serve")


@pytest.mark.parametrize(
    ("budget", "workers", "replicas", "size"), [(20, 1, 1, 20), (20, 2, 1, 10), (20, 3, 2, 3)]
)
def test_each_process_gets_its_share(budget: int, workers: int, replicas: int, size: int) -> None:
    assert pool_size_for(budget, workers, replicas) == size


def test_a_budget_smaller_than_the_processes_is_refused() -> None:
    with pytest.raises(PoolBudgetError, match=r"each of 6 processes \(3 workers x 2 replicas\)"):
        pool_size_for(5, 3, 2)


def test_serve_refuses_to_start_when_the_budget_cannot_fit() -> None:
    env = {**os.environ, "WEB_CONCURRENCY": "4", "DB__CONNECTION_BUDGET": "3", "PORT": "1"}

    result = subprocess.run(
        [SERVE], env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("invalid configuration: DB__CONNECTION_BUDGET=3 cannot give")
