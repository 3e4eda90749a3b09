"""Host header check: a request for a host not in TRUSTED_HOSTS gets a 400 problem, probes excepted.

Absolute URLs built from a request (Starlette's trailing-slash redirects, `request.url_for`) take
their host from the Host header, and a page on an attacker's domain that resolves to this service
(DNS rebinding) reaches it with the attacker's host in that header: naming the hosts the service
answers to stops both.

Starlette's TrustedHostMiddleware matches hosts the same way, but answers a plain-text 400 and
refuses probes too: a kubelet's httpGet probe sends the pod's IP as its Host, which no list of
public names holds. This one answers a problem body like every other error, and always lets the
probe paths through (they reveal nothing that a host check protects).
"""

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import problem


def host_of(header: bytes) -> str:
    """The host part of a Host header, lowercase and without its port (`[::1]:8000` -> `[::1]`)."""
    host = header.decode("latin-1").strip().lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.partition(":")[0]


def is_trusted(host: str, patterns: Iterable[str]) -> bool:
    """`api.example.com` matches itself only; `*.example.com` any subdomain, not the domain."""
    return any(
        host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:]))
        for pattern in patterns
    )


class TrustedHostMiddleware:
    """Pure ASGI, inside request id and timing (a refusal is logged and timed like any answer)."""

    def __init__(
        self, app: ASGIApp, *, trusted_hosts: Iterable[str], always_allow: Iterable[str]
    ) -> None:
        self.app = app
        self.trusted_hosts = tuple(trusted_hosts)
        self.always_allow = frozenset(always_allow)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.always_allow:
            await self.app(scope, receive, send)
            return
        # No Host header at all (HTTP/1.0) is no trusted host either.
        header = next((value for name, value in scope["headers"] if name == b"host"), b"")
        if is_trusted(host_of(header), self.trusted_hosts):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            # Closing before the handshake is accepted makes the server refuse it with a 403.
            await send({"type": "websocket.close", "code": 1008})
        else:
            await problem(400, "The Host header names a host this service does not serve.")(
                scope, receive, send
            )
