"""An OTLP/HTTP sink on loopback for the traced variants: reads each export, answers 200.

It decodes nothing: the row measures what tracing costs the service (spans made, batched,
serialized and sent from the exporter's thread), not what a collector does with them.
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive, as a collector answers: the exporter reuses its connection.
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def running() -> Iterator[str]:
    """The sink's base URL (OTEL_EXPORTER_OTLP_ENDPOINT), for as long as this lasts."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
