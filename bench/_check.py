"""Before any load: every app serves the same document, and the query count each one reports.

A benchmark whose variants return different data, or whose "1 query" variant quietly runs ten,
measures nothing; the runner stops on either.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bench._errors import BenchError
from bench._http import get
from bench._servers import Server

_QUERIES = re.compile(r'\bdb;[^,]*desc="(\d+) quer(?:y|ies)"')
_CACHE = re.compile(r'\bcache;desc="?(\w+)')
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def normalized(value: Any) -> Any:
    """The document with ISO datetimes parsed: encoders spell UTC as "Z" or "+00:00"."""
    if isinstance(value, dict):
        return {key: normalized(item) for key, item in value.items()}
    if isinstance(value, list):
        return [normalized(item) for item in value]
    if isinstance(value, str) and _ISO_DATETIME.match(value):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def queries_reported(server_timing: str | None) -> int | None:
    """N from `db;...;desc="N queries"` in a Server-Timing header; None when it is not there."""
    match = _QUERIES.search(server_timing or "")
    return int(match.group(1)) if match else None


def cache_result(server_timing: str | None) -> str | None:
    """The cache's answer (hit or miss) from `cache;desc=...` in a Server-Timing header, or None."""
    match = _CACHE.search(server_timing or "")
    return match.group(1) if match else None


def _first_difference(left: Any, right: Any, path: str = "$") -> str:
    """Where two JSON values first differ, as a JSONPath-like location and both values."""
    if isinstance(left, dict) and isinstance(right, dict):
        for key in sorted(set(left) | set(right)):
            if key not in left or key not in right:
                return f"{path}.{key}: present in only one document"
            if left[key] != right[key]:
                return _first_difference(left[key], right[key], f"{path}.{key}")
    if isinstance(left, list) and isinstance(right, list):
        if len(left) != len(right):
            return f"{path}: {len(left)} items vs {len(right)}"
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            if a != b:
                return _first_difference(a, b, f"{path}[{index}]")
    return f"{path}: {left!r} vs {right!r}"


def check_documents(
    servers: Sequence[Server], *, ids: Sequence[int], missing_id: int, items_per_order: int
) -> dict[str, int]:
    """Compare every server's GET /orders/{id} for `ids`; return each one's queries per request.

    Each server must answer 200 with the same document (after normalizing datetimes) and with
    `items_per_order` items, and 404 for `missing_id`. The query count is the largest a server
    reported over the ids, so a count that varies with the order cannot hide; a cache hit
    (`cache;desc=hit` and no `db` metric) counts as 0 queries.
    """
    queries: dict[str, int] = {}
    for order_id in ids:
        reference: tuple[str, Any] | None = None
        for server in servers:
            response = get(f"{server.base_url}/orders/{order_id}")
            if response.status != 200:
                raise BenchError(
                    f"{server.name}: GET /orders/{order_id} answered {response.status}:"
                    f" {response.body[:300]!r}"
                )
            document = normalized(json.loads(response.body))
            if len(document.get("items", ())) != items_per_order:
                raise BenchError(
                    f"{server.name}: order {order_id} has {len(document.get('items', ()))} items,"
                    f" the seed asked for {items_per_order}"
                )
            if reference is None:
                reference = (server.name, document)
            elif document != reference[1]:
                raise BenchError(
                    f"{server.name} and {reference[0]} disagree on order {order_id}:"
                    f" {_first_difference(document, reference[1])}"
                )
            timing = response.headers.get("server-timing")
            count = queries_reported(timing)
            if count is None and cache_result(timing) == "hit":
                count = 0
            if count is None:
                raise BenchError(
                    f"{server.name}: no query count in Server-Timing"
                    f" ({response.headers.get('server-timing')!r})"
                )
            queries[server.name] = max(queries.get(server.name, 0), count)
    for server in servers:
        status = get(f"{server.base_url}/orders/{missing_id}").status
        if status != 404:
            raise BenchError(f"{server.name}: GET /orders/{missing_id} answered {status}, not 404")
    return queries
