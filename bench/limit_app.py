"""The ceiling of the benchmark: GET /orders/{id} with no framework and no Python-side JSON.

A bare ASGI callable over an asyncpg pool: one query in which PostgreSQL builds the whole order
document, passed through as the response body. Whatever a FastAPI service does on top of this is
the price of its framework, validation and serialization; this app measures what is left.

Run: DATABASE_URL=postgresql://... uvicorn --app-dir bench limit_app:app
"""

from __future__ import annotations

import os
from typing import Any

import asyncpg

# The same pool as the generated projects and the naive app. min = max: every connection is
# opened at start-up, so the first round does not pay for connecting.
POOL_SIZE = 20
MAX_BIGINT = 2**63 - 1

ORDER_DOCUMENT = """
SELECT json_build_object(
  'id', o.id, 'status', o.status, 'created_at', o.created_at, 'confirmed_at', o.confirmed_at,
  'customer', json_build_object('id', c.id, 'name', c.name, 'email', c.email),
  'items', COALESCE(it.items, '[]'::json), 'total_cents', COALESCE(it.total_cents, 0)
)::text
FROM orders o
JOIN customers c ON c.id = o.customer_id
LEFT JOIN LATERAL (
  SELECT json_agg(json_build_object('id', i.id, 'sku', i.sku, 'quantity', i.quantity,
                                    'unit_price_cents', i.unit_price_cents) ORDER BY i.id) AS items,
         sum(i.quantity * i.unit_price_cents) AS total_cents
  FROM order_items i WHERE i.order_id = o.id
) it ON true
WHERE o.id = $1
"""

PREFIX = "/orders/"
JSON_HEADERS = [
    (b"content-type", b"application/json"),
    # Constant, not counted: the route runs exactly one query by construction. It lets the
    # runner check every variant's query count the same way.
    (b"server-timing", b'db;desc="1 query"'),
]
NOT_FOUND = b'{"detail":"Not Found"}'

Scope = dict[str, Any]
Message = dict[str, Any]


class LimitApp:
    """ASGI 3 application: the lifespan owns the pool; http requests read one document each."""

    def __init__(self) -> None:
        self.pool: asyncpg.Pool | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message: Message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.pool = await asyncpg.create_pool(
                        os.environ["DATABASE_URL"],
                        min_size=POOL_SIZE,
                        max_size=POOL_SIZE,
                        # json_build_object formats timestamptz in the session time zone: UTC
                        # spells it +00:00 whatever the server's default is.
                        server_settings={"timezone": "UTC"},
                    )
                except Exception as error:
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.pool is not None:
                    await self.pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, send: Any) -> None:
        order_id = _order_id(scope)
        body = None
        if order_id is not None and self.pool is not None:
            body = await self.pool.fetchval(ORDER_DOCUMENT, order_id)
        if body is None:
            await _respond(send, 404, NOT_FOUND)
        else:
            await _respond(send, 200, body.encode())


def _order_id(scope: Scope) -> int | None:
    """The id of a GET /orders/{id} request, or None for any other request."""
    path: str = scope["path"]
    if scope["method"] != "GET" or not path.startswith(PREFIX):
        return None
    text = path[len(PREFIX) :]
    if not text.isascii() or not text.isdigit():
        return None
    order_id = int(text)
    return order_id if order_id <= MAX_BIGINT else None


async def _respond(send: Any, status: int, body: bytes) -> None:
    # A length lets the server write one plain response instead of chunked encoding.
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


app = LimitApp()
