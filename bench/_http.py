"""One plain HTTP GET with the standard library: enough for readiness polls and content checks."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message


@dataclass(frozen=True)
class Response:
    status: int
    headers: Message
    body: bytes


def get(url: str, timeout: float = 10.0) -> Response:
    """GET `url`; any HTTP status is a Response, only connection problems raise (OSError)."""
    # Loopback URLs built by the runner, never user input: the scheme is always http.
    request = urllib.request.Request(url, method="GET")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return Response(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, error.headers, error.read())
