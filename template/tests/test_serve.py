"""`serve` starts the real server process: it answers probes and stops cleanly on SIGTERM."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

# The console script installed beside this interpreter: the same entry point the container runs.
SERVE = Path(sys.executable).with_name("serve")
START_TIMEOUT_SECONDS = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_env(**overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in {"WEB_CONCURRENCY"}}
    return {**env, "HOST": "127.0.0.1", "LOG_LEVEL": "info", **overrides}


def wait_until_serving(process: subprocess.Popen[str], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            httpx2.get(url, timeout=1)
        except httpx2.TransportError:
            time.sleep(0.1)
        else:
            return
    pytest.fail(f"serve did not answer {url} within {START_TIMEOUT_SECONDS} s")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    # Output goes to a file: a pipe nobody reads would block the server once its buffer fills.
    with (tmp_path / "serve.log").open("w") as log:
        process = subprocess.Popen(
            [SERVE], env=serve_env(PORT=str(port)), stdout=log, stderr=log, text=True
        )
    try:
        wait_until_serving(process, f"{base_url}/livez", tmp_path / "serve.log")
        yield process, base_url, tmp_path / "serve.log"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_answers_livez_and_exits_cleanly_on_sigterm(
    server: tuple[subprocess.Popen[str], str, Path],
) -> None:
    process, base_url, log = server

    response = httpx2.get(f"{base_url}/livez", timeout=5)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=START_TIMEOUT_SECONDS)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    # uvicorn re-raises the signal after its graceful shutdown, so "killed by SIGTERM" is clean too;
    # the lifespan's closing line is the proof that shutdown ran to the end.
    assert process.returncode in {0, -signal.SIGTERM}
    assert "shutdown complete" in log.read_text()


def test_serve_refuses_bad_configuration_with_one_line() -> None:
    result = subprocess.run(
        [SERVE],
        env=serve_env(PORT="eighty"),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_SECONDS,
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.strip().startswith("invalid configuration: PORT")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
