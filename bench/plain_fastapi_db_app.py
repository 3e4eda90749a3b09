"""The ceiling of a database read with the framework: FastAPI, the limit app's query, bytes out.

A plain FastAPI route over the limit app's pool and query, and nothing else: no middleware, no
model, no Python-side JSON. PostgreSQL builds the document and the route passes it through, as
bench/limit_app.py does without a framework, so the gap between the two rows is what FastAPI
alone (routing, parameter validation, Request and Response) costs a database read; the gap
between this row and the template's is what the template's own layers cost.

Run: DATABASE_URL=postgresql://... uvicorn --app-dir bench plain_fastapi_db_app:app
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import Response

# One query and one pool size for both rows, so the SQL exists once. uvicorn imports both apps
# as top-level modules (--app-dir bench); mypy checks bench/ as the package it is, and cannot see
# one file under both names.
if TYPE_CHECKING:
    from bench.limit_app import MAX_BIGINT, NOT_FOUND, ORDER_DOCUMENT, POOL_SIZE
else:
    from limit_app import MAX_BIGINT, NOT_FOUND, ORDER_DOCUMENT, POOL_SIZE

# Constant, not counted: the route runs exactly one query by construction. It lets the runner
# check this row's query count the way it checks the limit app's and the projects'.
DB_HEADERS = {"server-timing": 'db;desc="1 query"'}


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    # The limit app's pool: min = max, every connection opened at start-up, so the first round
    # does not pay for connecting.
    pool = await asyncpg.create_pool(
        os.environ["DATABASE_URL"],
        min_size=POOL_SIZE,
        max_size=POOL_SIZE,
        # json_build_object formats timestamptz in the session time zone: UTC spells it +00:00
        # whatever the server's default is, as in the limit app's documents.
        server_settings={"timezone": "UTC"},
    )
    yield {"pool": pool}
    await pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/orders/{order_id}")
async def get_order(order_id: int, request: Request) -> Response:
    # An id past bigint would make asyncpg raise (a 500); the limit app answers it 404 unasked.
    body = None
    if order_id <= MAX_BIGINT:
        body = await request.state.pool.fetchval(ORDER_DOCUMENT, order_id)
    if body is None:
        return Response(NOT_FOUND, status_code=404, media_type="application/json")
    return Response(body, media_type="application/json", headers=DB_HEADERS)
