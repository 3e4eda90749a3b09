"""The reference apps' own environment (bench/requirements.txt), and how each one is started.

They run in a venv of their own under the run's temporary directory, on the same interpreter as
the generated projects, so they depend neither on this repo's dev group nor on a project's lock.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench._errors import BenchError

BENCH = Path(__file__).resolve().parent
REQUIREMENTS = BENCH / "requirements.txt"

# Runs one SQL statement with the venv's asyncpg: the runner then needs no psql of its own.
_RUN_SQL = """
import asyncio, sys
import asyncpg

async def main() -> None:
    connection = await asyncpg.connect(sys.argv[1])
    try:
        if sys.argv[3] == "fetch":
            print(await connection.fetchval(sys.argv[2]))
        else:
            await connection.execute(sys.argv[2])
    finally:
        await connection.close()

asyncio.run(main())
"""


def _run(command: list[str], what: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BenchError(f"{what} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout


def build_venv(uv: str, directory: Path, interpreter: Path) -> Path:
    """Create the venv on `interpreter` with the pinned requirements; return its python."""
    _run(
        [uv, "venv", "--quiet", "--python", str(interpreter), str(directory)],
        f"uv venv --python {interpreter}",
    )
    python = directory / "bin" / "python"
    _run(
        [uv, "pip", "install", "--quiet", "--python", str(python), "-r", str(REQUIREMENTS)],
        "installing bench/requirements.txt",
    )
    return python


def uvicorn_command(python: Path, module: str, port: int) -> list[str]:
    """One uvicorn process (no supervisor), uvloop + httptools, quiet, serving `module`:app."""
    return [
        str(python),
        "-m",
        "uvicorn",
        f"{module}:app",
        "--app-dir",
        str(BENCH),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--lifespan",
        "on",
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def fetch_sql(python: Path, url: str, query: str) -> str:
    """The first value of `query`, as text."""
    return _run([str(python), "-c", _RUN_SQL, url, query, "fetch"], "SQL").strip()


def execute_sql(python: Path, url: str, statement: str) -> None:
    """Run a statement through the simple query protocol (what VACUUM needs)."""
    _run([str(python), "-c", _RUN_SQL, url, statement, "execute"], "SQL")
