"""Builds the one outbound HTTP client the service shares: pooled, with every wait bounded."""

import httpx2

from app.settings import HttpClientSettings


def outbound_client(settings: HttpClientSettings) -> httpx2.AsyncClient:
    """A pooled client; the lifespan opens it once and closes it at shutdown.

    One client per process reuses TCP and TLS connections across requests; a client per request
    pays a handshake every time and leaks sockets under load.
    """
    return httpx2.AsyncClient(
        timeout=httpx2.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.write_timeout,
            pool=settings.pool_timeout,
        ),
        limits=httpx2.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=settings.max_keepalive_connections,
            keepalive_expiry=settings.keepalive_expiry,
        ),
    )
