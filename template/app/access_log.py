"""The access log: one line per request on stdout, JSON or text, written without `logging`.

The line is the one app.logs' formatters make of a record (time, level, logger "access", message,
method, path, status, duration_ms, request_id, and trace_id when traced), so a log shipper sees the
same fields as in every other line. It is written here directly because it is written for every
request: through logging (a LogRecord, the ids filter, the handler's lock, the formatter) the line
cost a Redis cache hit 77 us of CPU in bench.layers' measurement, written here 31 us
(bench/results/LAYERS.md). Application logs, the slow-request warning included, still go through
logging to stderr.
"""

import sys

from app.logs import encode_line, line_time
from app.request_id import current_request_id, current_trace_id


class AccessLog:
    """Writes and flushes each line at once: a line sits in no buffer a crash could lose."""

    def __init__(self, log_format: str) -> None:
        self.json = log_format == "json"

    def write(self, created: float, method: str, path: str, status: int, seconds: float) -> None:
        duration_ms = round(seconds * 1000, 1)
        request_id = current_request_id()
        trace_id = current_trace_id()
        if self.json:
            # The text the formatter's json encoder makes of the line's dict, byte for byte, put
            # together in one f-string: the dict and the encoder's walk over it were most of the
            # line's cost in the served benchmark. Only the strings that come from the request are
            # escaped (by the same encoder, its C string escaping); the rest is known to be plain.
            method_json = encode_line(method)[1:-1]
            path_json = encode_line(path)[1:-1]
            text = (
                # The opening brace as a literal of its own: an f-string would need it doubled,
                # which reads as Jinja to the template's checks. Joined when compiled.
                "{"
                f'"time": "{line_time(created)}", "level": "info", "logger": "access",'
                f' "message": "{method_json} {path_json} {status}", "method": "{method_json}",'
                f' "path": "{path_json}", "status": {status}, "duration_ms": {duration_ms!r},'
                f' "request_id": {encode_line(request_id)}'
            )
            text += f', "trace_id": "{trace_id}"}}' if trace_id is not None else "}"
        else:
            text = (
                f"{line_time(created)} INFO access [{request_id}] {method} {path} {status}"
                f" method={method} path={path} status={status} duration_ms={duration_ms}"
            )
            if trace_id is not None:
                text += f" trace_id={trace_id}"
        # Looked up at each write, so a redirected stdout (tests, a wrapper) gets the lines.
        stream = sys.stdout
        stream.write(text + "\n")
        stream.flush()
