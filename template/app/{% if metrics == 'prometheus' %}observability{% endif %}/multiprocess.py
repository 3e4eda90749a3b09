"""Metrics across worker processes: one directory of per-process files, compacted as workers die.

prometheus_client's multiprocess mode has every process write its samples to `<type>_<pid>.db`
files in PROMETHEUS_MULTIPROC_DIR, and a scrape merges them all. By design it never deletes the
counters and histograms of a process that exited (client_python#411), so every recycled or
killed worker leaves its files behind: client_python#204 reports 5,414 files and 10 s scrapes.
Here the files of dead processes are folded into one archive file per type and then deleted, at
every scrape and whenever a worker starts, so the directory holds the live workers' files plus
the archives, whatever the number of workers that ever ran, and no counter goes backwards when a
worker dies. A lock file keeps a scrape from reading between the fold and the delete.

prometheus_client picks its file-backed values at import when the variable is set, so this
module imports it only inside functions: `serve` sets the variable first, then imports it.
"""

import atexit
import contextlib
import fcntl
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ENV = "PROMETHEUS_MULTIPROC_DIR"
# counter_123.db, histogram_123.db, gauge_livesum_123.db: the type, a gauge's mode, the pid.
_FILE = re.compile(r"^(?P<kind>[a-z]+(?:_[a-z]+)?)_(?P<pid>\d+)\.db$")
ARCHIVE_PID = "archive"
_LOCK_FILE = ".lock"


def prepare_directory() -> Path:
    """The directory every worker writes to, emptied, and exported for the workers to inherit.

    PROMETHEUS_MULTIPROC_DIR when set (a tmpfs volume in a read-only container), else a new
    directory in memory-backed /dev/shm where there is one. Files of an earlier run would be
    counted again, so the directory is emptied: `serve` calls this once, before any worker starts.
    """
    configured = os.environ.get(ENV)
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for leftover in path.glob("*.db"):
            leftover.unlink()
    else:
        shm = Path("/dev/shm")  # noqa: S108  # memory-backed where it exists, like the workers' heartbeat files
        path = Path(tempfile.mkdtemp(prefix="metrics-", dir=shm if shm.is_dir() else None))
        # Made here, so removed here: repeated runs on a laptop do not fill /dev/shm.
        atexit.register(shutil.rmtree, path, ignore_errors=True)
    os.environ[ENV] = str(path)
    return path


def directory() -> Path | None:
    """The multiprocess directory of this process, or None when it runs alone (tests)."""
    configured = os.environ.get(ENV)
    return Path(configured) if configured else None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with (path / _LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process holds the pid now: not ours, but alive
        return True
    return True


def compact(path: Path) -> int:
    """Fold the files of dead processes into the archives and delete them; returns how many.

    Counters and histograms are added into `<type>_archive.db` (histogram buckets are stored per
    bucket, not cumulated, so they add up too). The gauges here are all `live*` ones, which count
    live processes only: a dead process's gauge files are simply deleted, as mark_process_dead does.
    """
    with _locked(path):
        return _compact_locked(path)


def _compact_locked(path: Path) -> int:
    # Imported here, not at the top: see the module docstring.
    from prometheus_client.mmap_dict import MmapedDict

    folded = 0
    archives: dict[str, Any] = {}
    try:
        for file in sorted(path.glob("*.db")):
            match = _FILE.match(file.name)
            if match is None or match["pid"] == ARCHIVE_PID or _alive(int(match["pid"])):
                continue
            kind = match["kind"]
            if not kind.startswith("gauge"):
                archive = archives.get(kind)
                if archive is None:
                    archive = archives[kind] = MmapedDict(str(path / f"{kind}_{ARCHIVE_PID}.db"))  # type: ignore[no-untyped-call]
                values = MmapedDict.read_all_values_from_file(str(file))  # type: ignore[no-untyped-call]
                for key, value, timestamp, _ in values:
                    archive.write_value(key, archive.read_value(key)[0] + value, timestamp)
            # The archive is written before the file goes: a crash in between counts it twice,
            # never loses it.
            file.unlink()
            folded += 1
    finally:
        for archive in archives.values():
            archive.close()
    return folded


def scrape(path: Path) -> bytes:
    """The merged samples of every process, live and dead, in the Prometheus text format."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))  # type: ignore[no-untyped-call]
    with _locked(path):
        _compact_locked(path)
        return generate_latest(registry)


def serve_metrics(host: str, port: int, setting: str) -> None:
    """Prepare the directory and serve it on `port`, or exit with one line naming `setting`.

    For the supervising process (`serve`, `worker`), before any worker or pool process starts.
    """
    path = prepare_directory()
    try:
        start_server(path, host, port)
    except OSError as error:
        sys.exit(
            f"invalid configuration: {setting} {port} cannot be served on {host}"
            f" ({error.strerror}): pick a free port, or 0 to serve no metrics"
        )
    log.info("metrics served", extra={"url": f"http://{host}:{port}/metrics"})


def start_server(path: Path, host: str, port: int) -> threading.Thread:
    """Serve GET /metrics from this (the supervising) process on its own port, in a thread.

    The workers' event loops never render a scrape, a scrape is answered even when every worker
    is busy or admission control refuses traffic, and the port is not the one the load balancer
    exposes (see the README's Metrics section).
    """
    from prometheus_client import CONTENT_TYPE_LATEST

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server calls
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404, "only /metrics is served here")
                return
            body = scrape(path)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Scrapes every few seconds are not worth a log line each."""

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="metrics-server", daemon=True)
    thread.start()
    return thread
