"""Load on a served project while a test breaks something: every response kept, with its time.

`Load` runs in a thread of its own (its own event loop), so the test can stop a database or
signal the server meanwhile. Each of `connections` keep-alive clients sends its next request as
soon as the last one ended; every response or transport error becomes a `Sample` stamped with
`time.monotonic()`, so a test can ask what happened before, during and after its event.
wrk counts failures; tests need to know which ones, and when.
"""

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import httpx2

# Between a transport error and the next try on that client: a refused connection fails in
# microseconds, and retrying at once would only spin.
RECONNECT_PAUSE_SECONDS = 0.01
STOP_TIMEOUT_SECONDS = 60
CONDITION_TIMEOUT_SECONDS = 60
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Sample:
    path: str
    started: float
    ended: float
    # None when no response came back (the `error` says why).
    status: int | None
    retry_after: str | None = None
    error: str | None = None
    content_type: str | None = None
    # Sent again after its connection closed with no response at all (see `retry_unanswered`).
    retried: bool = False

    @property
    def seconds(self) -> float:
        return self.ended - self.started


class Load:
    """`with Load(base_url, path_for, connections=8) as load:` ... `load.samples`."""

    def __init__(
        self,
        base_url: str,
        path_for: Callable[[int], str],
        *,
        connections: int,
        request_timeout: float = 30.0,
        honor_retry_after: bool = False,
        retry_unanswered: bool = False,
    ) -> None:
        self.base_url = base_url
        # As a polite client does: a 503's Retry-After seconds pass before that client's next try.
        self.honor_retry_after = honor_retry_after
        # As RFC 9112 (9.3.1) lets a client, and as nginx (proxy_next_upstream error) and browsers
        # do: a GET whose keep-alive connection closed before any byte of a response is sent once
        # more, on a new connection. A server closing an idle keep-alive connection (at shutdown)
        # cannot see a request already on the wire, so without this the close races the request.
        self.retry_unanswered = retry_unanswered
        self.path_for = path_for
        self.connections = connections
        self.request_timeout = request_timeout
        self.samples: list[Sample] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)
        self._failure: BaseException | None = None

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _error: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop sending; wait for the requests in flight to end (each bounded by its timeout)."""
        self._stopping.set()
        self._thread.join(STOP_TIMEOUT_SECONDS)
        if self._thread.is_alive():
            raise RuntimeError(f"the load did not stop within {STOP_TIMEOUT_SECONDS} s")
        if self._failure is not None:
            raise RuntimeError("the load generator itself failed") from self._failure

    def between(self, start: float, end: float) -> list[Sample]:
        """The samples of requests that started in [start, end)."""
        return [sample for sample in self.samples if start <= sample.started < end]

    def ended_since(self, since: float, status: int | None = None) -> list[Sample]:
        """Requests that started at or after `since` and have ended (with `status`, if given)."""
        return [
            sample
            for sample in list(self.samples)
            if sample.started >= since and (status is None or sample.status == status)
        ]

    def wait_for(self, what: str, condition: Callable[[], bool]) -> float:
        """Poll `condition()` (about what the load saw) until it holds; the time it first did.

        A guard of CONDITION_TIMEOUT_SECONDS against a hang, not a speed limit: it fails the test
        with `what`, and with the load generator's own failure if it has one.
        """
        deadline = time.monotonic() + CONDITION_TIMEOUT_SECONDS
        while not condition():
            if self._failure is not None:
                raise RuntimeError("the load generator itself failed") from self._failure
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {CONDITION_TIMEOUT_SECONDS} s: {what}")
            time.sleep(POLL_SECONDS)
        return time.monotonic()

    def _run(self) -> None:
        try:
            asyncio.run(self._load())
        except BaseException as error:  # reported by stop(), in the test's thread
            self._failure = error

    async def _load(self) -> None:
        limits = httpx2.Limits(
            max_connections=self.connections, max_keepalive_connections=self.connections
        )
        async with httpx2.AsyncClient(
            base_url=self.base_url,
            timeout=self.request_timeout,
            limits=limits,
            # Loopback only: a proxy from the environment must not sit in between.
            trust_env=False,
        ) as client:
            await asyncio.gather(*(self._client(client, n) for n in range(self.connections)))

    async def _client(self, client: httpx2.AsyncClient, number: int) -> None:
        sent = 0
        while not self._stopping.is_set():
            path = self.path_for(number * 1_000_003 + sent)
            sent += 1
            started = time.monotonic()
            retried = False
            try:
                try:
                    response = await client.get(path)
                except httpx2.RemoteProtocolError as error:
                    if not (self.retry_unanswered and "without sending a response" in str(error)):
                        raise
                    retried = True
                    response = await client.get(path)
            except httpx2.TransportError as error:
                self.samples.append(
                    Sample(
                        path,
                        started,
                        time.monotonic(),
                        None,
                        error=type(error).__name__,
                        retried=retried,
                    )
                )
                await asyncio.sleep(RECONNECT_PAUSE_SECONDS)
                continue
            retry_after = response.headers.get("retry-after")
            self.samples.append(
                Sample(
                    path,
                    started,
                    time.monotonic(),
                    response.status_code,
                    retry_after=retry_after,
                    content_type=response.headers.get("content-type"),
                    retried=retried,
                )
            )
            if self.honor_retry_after and response.status_code == 503 and retry_after:
                await asyncio.sleep(float(retry_after))
