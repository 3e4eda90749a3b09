"""The cache-hit variants' Redis: a throwaway server, its keys, the warm-up that fills it, its hit
counters.

Those rows measure cache hits only. Every order id wrk can ask for is fetched once before the
checks, one more request must then say `cache;desc=hit`, and every round is checked against
Redis' own lookup counters: a miss, or fewer lookups than requests (the app's circuit breaker
skipping Redis), means some requests went to PostgreSQL and the row would measure a mix.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench._check import cache_result
from bench._errors import BenchError
from bench._http import get
from bench._procs import listening_pid
from bench._projects import run
from bench._servers import Server
from tests.services import ServiceError, redis

INFO_TIMEOUT_SECONDS = 5

# Run inside a rendered project: the key its GET /orders/{id} route asks its cache for, for two
# order ids, through the project's own code (its settings' namespace, document_key with the schema
# hash, CacheAside's namespacing), with a backend that only records the key.
_KEYS_OF_PROJECT = """
import asyncio

from app.cache import CacheAside, document_key
from app.settings import Settings


class Recorder:
    key = ""

    async def get(self, key):
        self.key = key
        return b"{}"


async def key_of(order_id):
    backend = Recorder()
    cache = CacheAside(backend, ttl=1, namespace=Settings().cache.namespace)
    await cache.get_or_load(document_key(order_id), None)
    return backend.key


async def main():
    print(await key_of(1))
    print(await key_of(2))


asyncio.run(main())
"""


@dataclass(frozen=True)
class CacheServer:
    """The running Redis: its URL for the app, its address, its process and version."""

    url: str
    host: str
    port: int
    pid: int
    version: str


@dataclass(frozen=True)
class Lookups:
    """Redis' keyspace_hits and keyspace_misses: GETs that found their key, GETs that did not."""

    hits: int
    misses: int


def start_redis(stack: ExitStack) -> CacheServer:
    """A throwaway Redis on a free loopback port (`tests.services.redis`), stopped with `stack`."""
    try:
        server = stack.enter_context(redis())
    except ServiceError as error:
        raise BenchError(f"cannot start Redis: {error}") from error
    pid = listening_pid(server.port)
    if pid is None:
        raise BenchError(f"cannot find the Redis process listening on {server.url}")
    version = info(server.host, server.port, "server").get("redis_version", "unknown")
    return CacheServer(server.url, server.host, server.port, pid, version)


def document_key_prefix(uv: str, project: Path, env: Mapping[str, str]) -> str:
    """What the cache-hit project's key of order N is before N, asked of its own code.

    `env` is the project's serving environment (the namespace is a setting). The keys of orders 1
    and 2 must be one prefix followed by the id: a template whose keys stop looking like that
    stops the run here, not in a row of 404s.
    """
    output = run(
        [uv, "run", "--quiet", "python", "-c", _KEYS_OF_PROJECT],
        project,
        f"computing {project.name}'s cache keys",
        env,
    )
    keys = output.split()
    prefix = keys[0].removesuffix("1") if keys else ""
    if keys != [f"{prefix}1", f"{prefix}2"] or not prefix.endswith(":"):
        raise BenchError(
            f"{project.name}'s cache keys of orders 1 and 2 are {keys!r}: not one prefix followed"
            " by the order id, which the plain FastAPI reference app expects"
        )
    return prefix


def info(host: str, port: int, section: str) -> dict[str, str]:
    """`INFO <section>` as name -> value, over plain RESP.

    Two counters and a version do not justify a Redis client in the runner: the command is an
    array of two bulk strings, the reply one bulk string of `name:value` lines.
    """
    command = f"*2\r\n$4\r\nINFO\r\n${len(section)}\r\n{section}\r\n".encode()
    with (
        socket.create_connection((host, port), timeout=INFO_TIMEOUT_SECONDS) as sock,
        sock.makefile("rb") as reply,
    ):
        sock.sendall(command)
        header = reply.readline()
        if not header.startswith(b"$"):
            answer = header.decode(errors="replace").strip()
            raise BenchError(f"Redis on {host}:{port} answered INFO with {answer!r}")
        body = reply.read(int(header[1:]))
    fields: dict[str, str] = {}
    for line in body.decode(errors="replace").splitlines():
        name, colon, value = line.partition(":")
        if colon and not name.startswith("#"):
            fields[name] = value
    return fields


def lookups(server: CacheServer) -> Lookups:
    stats = info(server.host, server.port, "stats")
    return Lookups(hits=int(stats["keyspace_hits"]), misses=int(stats["keyspace_misses"]))


def warm(app: Server, orders: int) -> None:
    """GET every order id once (each miss fills the cache), then check that one more is a hit."""
    for order_id in range(1, orders + 1):
        status = get(f"{app.base_url}/orders/{order_id}").status
        if status != 200:
            raise BenchError(f"{app.name}: GET /orders/{order_id} answered {status} while warming")
    timing = get(f"{app.base_url}/orders/1").headers.get("server-timing")
    if cache_result(timing) != "hit":
        raise BenchError(
            f"{app.name}: GET /orders/1 after warming the cache is no cache hit (Server-Timing:"
            f" {timing!r}); its log ({app.log}) may say why"
        )


def check_all_hits(app: str, before: Lookups, after: Lookups, requests: int) -> None:
    """Stop when a round of `requests` was not served from the cache alone."""
    hits = after.hits - before.hits
    misses = after.misses - before.misses
    # Requests still in flight when wrk stops reach Redis without being counted by wrk: hits may
    # exceed requests, never fall short of them.
    if misses or hits < requests:
        raise BenchError(
            f"{app}: {hits} cache hits and {misses} misses in Redis for {requests} requests in one"
            " round: not every request was a hit (an expired key, or the app's circuit breaker"
            " skipping a slow Redis), so the row would measure a mix of hits and queries"
        )
