"""Inside a rendered cache-hit project: the CPU of one cache hit, each layer in turn made a no-op.

Run by bench.layers with the project's own interpreter (`uv run python <this file>` in the project,
its serving environment set), never imported by the runner. The project's ASGI app runs in this
process as its server runs it (create_app, the lifespan through ASGI lifespan messages, uvloop,
logging configured as `serve` does, Prometheus in multiprocess mode), but no HTTP server: a minimal
driver hands it scopes and collects what it sends, so every CPU microsecond counted is the app's.

For every variant, `--requests` GET /orders/{id} (ids cycling over the warmed ones, `--concurrency`
in flight) are timed with the process's CPU clock; the variants alternate in each of `--rounds`
rounds (the order rotating), and the result is every round's CPU per request, as JSON. A variant
replaces one layer with a pass-through, so `baseline - variant` of the same round is that layer's
cost. Pure-CPU framework steps with no layer to remove (routing, dependency resolution, the
response) are timed alone on the same inputs. Every response must be the 200 of a cache hit.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging.config
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from pathlib import Path
from typing import Any

from starlette.middleware.exceptions import ExceptionMiddleware

Scope = dict[str, Any]
Message = dict[str, Any]
App = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Any]

# What wrk sends (bench/orders.lua): a GET with a Host header and nothing else.
HEADERS = [(b"host", b"127.0.0.1:8000")]
ROUTE = "/orders/{order_id}"


def scope_for(order_id: int, state: dict[str, Any]) -> Scope:
    """An http scope as uvicorn builds it for `GET /orders/<id>` (state copied per request)."""
    path = f"/orders/{order_id}"
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 40000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": list(HEADERS),
        "state": state.copy(),
    }


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def request(app: App, order_id: int, state: dict[str, Any]) -> tuple[int, bytes, bytes]:
    """One request through the app: its status, Server-Timing header and body."""
    status = 0
    timing = b""
    body = []

    async def send(message: Message) -> None:
        nonlocal status, timing
        if message["type"] == "http.response.start":
            status = message["status"]
            timing = dict(message.get("headers", ())).get(b"server-timing", b"")
        elif message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    await app(scope_for(order_id, state), _receive, send)
    return status, timing, b"".join(body)


async def started(app: App, stack: AsyncExitStack) -> dict[str, Any]:
    """Run the app's lifespan as a server does; its state, shut down when `stack` closes."""
    state: dict[str, Any] = {}
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": state}
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    answer = await outbox.get()
    if answer["type"] != "lifespan.startup.complete":
        raise SystemExit(f"lifespan startup failed: {answer}")

    async def shutdown() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task

    stack.push_async_callback(shutdown)
    return state


async def load(
    app: App, state: dict[str, Any], *, requests: int, concurrency: int, orders: int
) -> tuple[float, float, list[int]]:
    """`requests` requests, `concurrency` at a time: CPU and wall seconds, non-200 statuses.

    CPU of this thread only, the loop's: background threads (the metrics probe's) are left out.
    """
    bad: list[int] = []
    per_worker = requests // concurrency

    async def worker(offset: int) -> None:
        for n in range(per_worker):
            status, _, _ = await request(app, (offset + n * concurrency) % orders + 1, state)
            if status != 200:
                bad.append(status)

    cpu, wall = time.thread_time(), time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return time.thread_time() - cpu, time.perf_counter() - wall, bad


def middleware_of(app: Any, cls: type) -> Any:
    """The instance of middleware class `cls` in the app's built stack (`.app` chain)."""
    layer = app.middleware_stack
    while layer is not None:
        if isinstance(layer, cls):
            return layer
        layer = getattr(layer, "app", None)
    raise SystemExit(f"no {cls.__name__} in the middleware stack")


@contextmanager
def patched(target: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, old)


async def _pass_through(self: Any, scope: Scope, receive: Any, send: Any) -> None:
    await self.app(scope, receive, send)


def variants(app: Any, documents: dict[str, bytes]) -> dict[str, Callable[[ExitStack], None]]:
    """Each variant's patches, applied to `stack`: the layer named made a no-op."""
    request_id = importlib.import_module("app.request_id")
    timing = importlib.import_module("app.timing")
    admission = importlib.import_module("app.admission")
    errors = importlib.import_module("app.errors")
    body_limit = importlib.import_module("app.body_limit")
    breaker = importlib.import_module("app.breaker")
    cache = importlib.import_module("app.cache")
    redis_cache = importlib.import_module("app.redis_cache")
    timed = middleware_of(app, timing.TimingMiddleware)

    def no_op(cls: type) -> Callable[[ExitStack], None]:
        return lambda stack: stack.enter_context(patched(cls, "__call__", _pass_through))

    def attribute(name: str, value: Any) -> Callable[[ExitStack], None]:
        return lambda stack: stack.enter_context(patched(timed, name, value))

    def no_breaker(stack: ExitStack) -> None:
        stack.enter_context(patched(breaker.CircuitBreaker, "allow", lambda _self: True))
        stack.enter_context(patched(breaker.CircuitBreaker, "record_success", lambda _self: None))

    async def bare_get_or_load(self: Any, key: str, load: Any) -> bytes | None:
        # A hit with nothing around the backend's GET but what Server-Timing needs.
        value: bytes | None = await self.backend.get(f"{self.namespace}:{key}")
        timing.current_stats().cache = "hit"
        return value

    async def stored(_self: Any, key: str) -> bytes | None:
        return documents.get(key)

    async def bare_endpoint(scope: Scope, receive: Any, send: Any) -> None:
        # In place of the router: the route's cache call and its bytes, no FastAPI around them.
        order_id = int(scope["path"].rpartition("/")[2])
        document = await scope["state"]["cache"].get_or_load(cache.document_key(order_id), None)
        headers = [(b"content-type", b"application/json")]
        headers.append((b"content-length", str(len(document)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": document})

    handler = middleware_of(app, ExceptionMiddleware)

    return {
        "baseline": lambda stack: None,
        "FastAPI request handling": lambda stack: stack.enter_context(
            patched(handler, "app", bare_endpoint)
        ),
        "request id middleware": no_op(request_id.RequestIdMiddleware),
        "timing middleware, all of it": no_op(timing.TimingMiddleware),
        "access log line": attribute("access_log", None),
        "metrics recording": attribute("observer", None),
        "tracing hook": attribute("tracer", None),
        "admission middleware": no_op(admission.AdmissionMiddleware),
        "crash middleware": no_op(errors.CrashMiddleware),
        "body limit middleware": no_op(body_limit.BodyLimitMiddleware),
        "circuit breaker": no_breaker,
        "cache-aside and single flight": lambda stack: stack.enter_context(
            patched(cache.CacheAside, "get_or_load", bare_get_or_load)
        ),
        "Redis GET (redis-py, hiredis, socket I/O)": lambda stack: stack.enter_context(
            patched(redis_cache.RedisCache, "get", stored)
        ),
    }


def per_call_seconds(run: Callable[[], object], calls: int) -> float:
    cpu = time.thread_time()
    for _ in range(calls):
        run()
    return (time.thread_time() - cpu) / calls


async def per_call_seconds_async(run: Callable[[], Awaitable[object]], calls: int) -> float:
    cpu = time.thread_time()
    for _ in range(calls):
        await run()
    return (time.thread_time() - cpu) / calls


def order_route(app: Any) -> Any:
    """The APIRoute of GET /orders/{order_id}, wherever the routers include it."""
    pending = list(app.router.routes)
    while pending:
        route = pending.pop()
        pending.extend(getattr(getattr(route, "original_router", None), "routes", ()))
        if getattr(getattr(route, "endpoint", None), "__name__", "") == "get_order":
            return route
    raise SystemExit("no get_order route in the app")


async def dependency_seconds(app: Any, state: dict[str, Any], calls: int) -> float:
    """The route's dependency resolution alone, as FastAPI's request handler calls it (s/call)."""
    from fastapi.dependencies.utils import solve_dependencies
    from starlette.requests import Request

    route = order_route(app)
    scope = {**scope_for(1, state), "app": app, "route": route, "path_params": {"order_id": "1"}}

    async def resolve() -> object:
        # The two exit stacks FastAPI's request handler puts in the scope before resolving.
        async with AsyncExitStack() as exit_stack, AsyncExitStack() as function_stack:
            scope["fastapi_inner_astack"] = exit_stack
            scope["fastapi_function_astack"] = function_stack
            solved = await solve_dependencies(
                request=Request(scope),
                dependant=route.dependant,
                dependency_overrides_provider=getattr(
                    app.router, "dependency_overrides_provider", None
                ),
                async_exit_stack=exit_stack,
                embed_body_fields=False,
            )
        if solved.errors:
            raise SystemExit(f"dependency resolution failed: {solved.errors}")
        return solved

    return await per_call_seconds_async(resolve, calls)


async def response_seconds(state: dict[str, Any], document: bytes, calls: int) -> float:
    """JSONBytesResponse(document) built and sent to a no-op (s/call)."""
    responses = importlib.import_module("app.responses")
    scope = scope_for(1, state)

    async def ignore(_message: Message) -> None:
        return None

    async def respond() -> None:
        await responses.JSONBytesResponse(document)(scope, _receive, ignore)

    return await per_call_seconds_async(respond, calls)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    settings_module = importlib.import_module("app.settings")
    logs = importlib.import_module("app.logs")
    main_module = importlib.import_module("app.main")
    settings = settings_module.Settings()
    # As `serve` configures it; the access log's stdout is a file, as a container's log is.
    logging.config.dictConfig(logs.logging_config(settings.log_level, settings.log_format))
    app = main_module.create_app(settings)
    result: dict[str, Any] = {"rounds": {}}
    async with AsyncExitStack() as stack:
        state = await started(app, stack)
        # Warm the cache (every miss loads and stores), then every order must be a hit.
        for order_id in range(1, args.orders + 1):
            await request(app, order_id, state)
        documents: dict[str, bytes] = {}
        namespace = settings.cache.namespace
        cache = importlib.import_module("app.cache")
        for order_id in range(1, args.orders + 1):
            status, timing, body = await request(app, order_id, state)
            if status != 200 or b"cache;desc=hit" not in timing:
                raise SystemExit(f"order {order_id}: {status}, Server-Timing {timing!r}: no hit")
            documents[f"{namespace}:{cache.document_key(order_id)}"] = body
        table = variants(app, documents)
        names = list(table)
        for number in range(args.rounds):
            # First-use costs land on the warm-up, not on the first variant of round 1.
            await load(
                app, state, requests=args.requests, concurrency=args.concurrency, orders=args.orders
            )
            for name in names[number % len(names) :] + names[: number % len(names)]:
                with ExitStack() as patches:
                    table[name](patches)
                    timed = await timed_round(app, state, args, name)
                result["rounds"].setdefault(name, []).append(timed)
        document = documents[next(iter(documents))]
        result["steps_us"] = {
            "dependency resolution": await dependency_seconds(app, state, args.calls) * 1e6,
            "response": await response_seconds(state, document, args.calls) * 1e6,
        }
        # The plain app reads the same entries: the same key, up to the order id.
        os.environ["ORDER_KEY_PREFIX"] = f"{namespace}:{cache.document_key(1)}".removesuffix("1")
        result["plain"] = await plain_app(args)
    return result


async def plain_app(args: argparse.Namespace) -> dict[str, Any]:
    """bench/plain_fastapi_hit_app.py in this same process and loop, timed like the variants."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    plain = importlib.import_module("plain_fastapi_hit_app").app
    rounds = []
    async with AsyncExitStack() as stack:
        state = await started(plain, stack)
        dependencies = await dependency_seconds(plain, state, args.calls)
        for _ in range(args.rounds):
            rounds.append(await timed_round(plain, state, args, "plain FastAPI app"))
    return {"rounds": rounds, "dependency_resolution_us": dependencies * 1e6}


async def timed_round(
    app: App, state: dict[str, Any], args: argparse.Namespace, who: str
) -> dict[str, float]:
    """One round of requests: CPU and wall time per request, in microseconds; all must be 200s."""
    cpu, wall, bad = await load(
        app, state, requests=args.requests, concurrency=args.concurrency, orders=args.orders
    )
    if bad:
        raise SystemExit(f"{who}: {len(bad)} answers were not 200: {bad[:5]}")
    done = args.requests // args.concurrency * args.concurrency
    return {"cpu_us": cpu / done * 1e6, "wall_us": wall / done * 1e6}


def main() -> None:
    parse = argparse.ArgumentParser()
    parse.add_argument("--requests", type=int, required=True)
    parse.add_argument("--rounds", type=int, required=True)
    parse.add_argument("--concurrency", type=int, required=True)
    parse.add_argument("--orders", type=int, required=True)
    parse.add_argument("--calls", type=int, required=True)
    parse.add_argument("--output", type=Path, required=True)
    args = parse.parse_args()
    # The project's modules, as `uv run serve` imports them from the project directory.
    sys.path.insert(0, os.getcwd())
    # The loop the project's server runs on (uvicorn's "auto" picks uvloop when installed).
    uvloop = importlib.import_module("uvloop")
    args.output.write_text(json.dumps(uvloop.run(measure(args))))


if __name__ == "__main__":
    main()
