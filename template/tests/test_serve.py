"""`serve` runs the real server process: probes, headers, worker count, graceful SIGTERM."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from app.platform import available_cpus

PROJECT = Path(__file__).resolve().parents[1]
# The console script installed beside this interpreter: the same entry point the container runs.
SERVE = Path(sys.executable).with_name("serve")
TIMEOUT_SECONDS = 30


@dataclass
class Server:
    process: subprocess.Popen[str]
    base_url: str
    log: Path

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (stdout and stderr share the file)."""
        lines = []
        for text in self.log.read_text().splitlines():
            try:
                lines.append(json.loads(text))
            except ValueError:
                continue
        return lines

    def wait_for_log(self, message: str, count: int = 1, **fields: Any) -> list[dict[str, Any]]:
        """The log lines with this message (and these fields), once there are `count` of them."""
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            found = [
                line
                for line in self.log_lines()
                if line["message"] == message
                and all(line.get(key) == value for key, value in fields.items())
            ]
            if len(found) >= count:
                return found
            time.sleep(0.1)
        pytest.fail(f"no {count} x {message!r} in the log:\n{self.log.read_text()}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=TIMEOUT_SECONDS)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "WEB_CONCURRENCY"}
    # METRICS__PORT=0: servers run side by side here, and would all want the one metrics port;
    # test_metrics_served.py starts the one that serves metrics (and names a free port).
    return {
        **env,
        "HOST": "127.0.0.1",
        "LOG_LEVEL": "info",
        "LOG_FORMAT": "json",
        "METRICS__PORT": "0",
        **overrides,
    }


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Any]:
    started: list[Server] = []

    def start(**env: str) -> Server:
        port = free_port()
        log_path = tmp_path / f"serve-{port}.log"
        # Output goes to a file: a pipe nobody reads would block the server once its buffer fills.
        with log_path.open("w") as log:
            # A session of its own: teardown can then reach the workers, not only the master.
            process = subprocess.Popen(
                [SERVE],
                env=serve_env(PORT=str(port), **env),
                stdout=log,
                stderr=log,
                text=True,
                start_new_session=True,
            )
        server = Server(process, f"http://127.0.0.1:{port}", log_path)
        started.append(server)
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"serve exited with {process.returncode}:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"serve did not answer in {TIMEOUT_SECONDS} s:\n{log_path.read_text()}")
            try:
                httpx2.get(f"{server.base_url}/livez", timeout=1)
                return server
            except httpx2.TransportError:
                time.sleep(0.1)

    yield start
    for server in started:
        # Graceful first, as in production; then nothing of the process group may survive
        # (killing only the master would leave its workers running as orphans).
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.process.wait(timeout=TIMEOUT_SECONDS)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()


def test_serve_answers_livez_with_request_id_and_server_timing(start_server: Any) -> None:
    server = start_server(WEB_CONCURRENCY="1")

    response = httpx2.get(f"{server.base_url}/livez", headers={"X-Request-ID": "probe-1"})

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"] == "probe-1"
    assert response.headers["server-timing"].startswith("app;dur=")
    [access] = server.wait_for_log("GET /livez 200", request_id="probe-1")
    assert access["logger"] == "access"


def child_processes(parent: int) -> set[int]:
    """The processes `parent` started, minus multiprocessing's resource tracker (uvicorn's)."""
    ps = shutil.which("ps")
    assert ps is not None, "ps (procps) is needed to list the server's processes"
    listing = subprocess.run(
        # -ww: whole command lines (piped, ps cuts them at 80 columns, tracker name and all).
        [ps, "-ww", "-A", "-o", "pid=,ppid=,command="],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=True,
    )
    children = set()
    for line in listing.stdout.splitlines():
        pid, ppid, command = line.split(None, 2)
        if int(ppid) == parent and "resource_tracker" not in command:
            children.add(int(pid))
    return children


def test_worker_processes_follow_web_concurrency(start_server: Any) -> None:
    server = start_server(WEB_CONCURRENCY="2")

    started = server.wait_for_log("startup complete", count=2)
    pids = {line["pid"] for line in started}

    assert len(pids) == 2
    assert server.process.pid not in pids
    # Every supervisor spawns all its workers at once, before any has started: an extra one
    # would be a child of the master by now, whether it has finished starting or not.
    assert child_processes(server.process.pid) == pids
    [starting] = [line for line in server.log_lines() if line["message"].startswith("starting ")]
    assert starting["workers"] == 2


def test_without_web_concurrency_one_worker_per_available_cpu(start_server: Any) -> None:
    server = start_server()
    cpus = available_cpus()

    server.wait_for_log("startup complete", count=cpus)
    [starting] = [line for line in server.log_lines() if line["message"].startswith("starting ")]

    assert starting["available_cpus"] == cpus
    assert starting["workers"] == cpus


def test_sigterm_lets_the_in_flight_request_finish(start_server: Any) -> None:
    server = start_server(
        WEB_CONCURRENCY="1", SERVER__APP="tests.slow_app:create_slow_app", PYTHONPATH=str(PROJECT)
    )
    responses: list[httpx2.Response] = []
    request = threading.Thread(
        target=lambda: responses.append(
            httpx2.get(f"{server.base_url}/_test/slow?seconds=2", timeout=TIMEOUT_SECONDS)
        )
    )
    request.start()
    server.wait_for_log("slow request started")

    exit_code = server.stop()
    request.join(TIMEOUT_SECONDS)

    [response] = responses
    assert response.status_code == 200
    assert response.json() == {"slept": 2.0}
    # Killed by its own SIGTERM after a graceful shutdown (uvicorn re-raises it) counts as clean.
    assert exit_code in {0, -signal.SIGTERM}
    server.wait_for_log("shutdown complete: shared resources closed")


def test_serve_refuses_bad_configuration_with_one_line() -> None:
    result = subprocess.run(
        [SERVE],
        env=serve_env(PORT="eighty"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.strip().startswith("invalid configuration: PORT")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def send_raw(base_url: str, request: bytes) -> bytes:
    """`request` as raw bytes on a new connection; the start of what comes back (b"" if cut)."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=TIMEOUT_SECONDS) as sock:
        try:
            sock.sendall(request)
            return sock.recv(200)
        except ConnectionError:
            return b""


def head_with_header(size: int) -> bytes:
    return b"GET /livez HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * size + b"\r\n\r\n"


def test_a_request_head_over_the_limit_is_a_431_from_the_server(start_server: Any) -> None:
    server = start_server(WEB_CONCURRENCY="1", SERVER__MAX_HEADER_BYTES="16384")

    under = send_raw(server.base_url, head_with_header(12_000))
    over = send_raw(server.base_url, head_with_header(20_000))
    # Megabytes are not read to the end: the connection is answered or cut while they arrive.
    flood = send_raw(server.base_url, head_with_header(20_000_000))

    assert under.startswith(b"HTTP/1.1 200")
    assert over.startswith(b"HTTP/1.1 431")
    assert flood == b"" or flood.startswith(b"HTTP/1.1 431")
    assert httpx2.get(f"{server.base_url}/livez").status_code == 200
