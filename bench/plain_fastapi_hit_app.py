"""The ceiling of a cache hit with the framework: FastAPI, one Redis GET, the cached bytes out.

A plain FastAPI route doing what the template's cache hit does at its core, and nothing else: no
middleware, no per-request stats, no breaker, no logging. It reads the very entries the
`cache-hit` project's warm-up stored (same Redis, same keys, the document bytes as that project
wrote them), so the gap between the two rows is the price of the template's own layers.

It never loads a document itself. A key that is not in Redis is answered 404, with the key in the
body, and logged: the runner's document check then stops on it (a known order must be a 200), and
so does its per-round check of Redis' miss counter. A wrong key can never turn into a fast row of
empty answers.

Run: REDIS_URL=redis://... ORDER_KEY_PREFIX=<namespace>:orders:<schema>: \
     uvicorn --app-dir bench plain_fastapi_hit_app:app
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

# redis is in bench/requirements.txt (this app's venv) but not in the repo's dev group, which
# mypy checks against; until it is, the client is untyped here.
from redis.asyncio import Redis

# As many connections as the template's client may open (CACHE__MAX_CONNECTIONS' default), so
# neither side waits on its pool under wrk's 32 connections.
MAX_CONNECTIONS = 50
# Constant, not measured: every answer that has a body is a hit by construction. It lets the
# runner check this row the way it checks the cache-hit project (`cache;desc=hit`, no query).
HIT_HEADERS = {"server-timing": "cache;desc=hit"}

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    # Key of order N: this prefix, then N. The runner asks the cache-hit project's own code for it
    # (bench._cache.document_key_prefix), so it follows that project's namespace and schema hash.
    prefix = os.environ["ORDER_KEY_PREFIX"]
    redis = Redis.from_url(os.environ["REDIS_URL"], max_connections=MAX_CONNECTIONS)
    await redis.ping()
    yield {"redis": redis, "key_prefix": prefix}
    await redis.aclose()


app = FastAPI(lifespan=lifespan)


@app.get("/orders/{order_id}")
async def get_order(order_id: int, request: Request) -> Response:
    key = f"{request.state.key_prefix}{order_id}"
    document = await request.state.redis.get(key)
    if document is None:
        log.warning("cache miss: no document at %s", key)
        return Response(
            f'{{"detail":"cache miss: no document at {key}"}}',
            status_code=404,
            media_type="application/json",
        )
    return Response(document, media_type="application/json", headers=HIT_HEADERS)
