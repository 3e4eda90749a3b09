"""deploy/nginx/nginx.conf: each of its limits and timeouts stays ordered against the service's.

The file is data: these tests read its directives (one per line, as it writes them) and compare
them with the defaults of app.settings, so that changing a default here without the balancer's
value there (or the other way round) fails. The template's own tests run the file in nginx.
"""

import re
from pathlib import Path
from typing import Any

from app.settings import ServerSettings, Settings

CONF = Path(__file__).resolve().parents[1] / "deploy" / "nginx" / "nginx.conf"
_DIRECTIVE = re.compile(r"^\s*(\w+)((?:\s+[^;#{}]+)?);")
_BLOCK = re.compile(r"^\s*(\w+)([^#{]*)\{")
_SIZE = {"": 1, "k": 1024, "m": 1024 * 1024}
_SECONDS = {"": 1, "s": 1, "m": 60}


def directives() -> list[tuple[str, str, list[str]]]:
    """(enclosing block, directive, arguments) for each simple directive of the file."""
    found = []
    blocks: list[str] = []
    for line in CONF.read_text().splitlines():
        if block := _BLOCK.match(line):
            blocks.append(f"{block[1]} {block[2].strip()}".strip())
        elif line.strip() == "}":
            blocks.pop()
        elif directive := _DIRECTIVE.match(line):
            found.append((blocks[-1] if blocks else "main", directive[1], directive[2].split()))
    assert not blocks, "unbalanced braces"
    return found


def only(name: str, block: str | None = None) -> list[str]:
    """The arguments of the one directive `name` (in `block`, if given)."""
    matches = [
        arguments
        for enclosing, directive, arguments in directives()
        if directive == name and (block is None or enclosing == block)
    ]
    assert len(matches) == 1, f"{name} in {block or 'the file'}: {matches}"
    return matches[0]


def size(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([km]?)", text.lower()).groups()  # type: ignore[union-attr]
    return int(number) * _SIZE[unit]


def seconds(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([sm]?)", text).groups()  # type: ignore[union-attr]
    return int(number) * _SECONDS[unit]


def default(name: str) -> Any:
    return Settings.model_fields[name].get_default(call_default_factory=True)


def test_nginx_drops_an_idle_upstream_connection_before_the_service_does() -> None:
    assert seconds(only("keepalive_timeout", "upstream app")[0]) < ServerSettings().keep_alive
    # Keep-alive to the replicas at all: a connection pool, HTTP/1.1, no "Connection: close".
    assert int(only("keepalive", "upstream app")[0]) > 0
    assert only("proxy_http_version") == ["1.1"]
    assert ["Connection", '""'] in [
        arguments for _, name, arguments in directives() if name == "proxy_set_header"
    ]


def test_nginx_refuses_nothing_the_service_would_serve() -> None:
    assert size(only("client_max_body_size")[0]) == default("max_body_bytes")
    number, buffer = only("large_client_header_buffers")
    # A head within the service's limit has no line longer than it, and fills at most two
    # buffers of that size (a line moves to a new buffer only when it does not fit the last one).
    assert size(buffer) >= ServerSettings().max_header_bytes
    assert int(number) >= 2


def test_nginx_waits_longer_than_the_service_takes_to_answer() -> None:
    read_timeout = seconds(only("proxy_read_timeout")[0])
    # A worker silent this long is killed and replaced by its supervisor.
    assert read_timeout > ServerSettings().worker_timeout
    if "db" in Settings.model_fields:
        database = default("db")
        assert read_timeout > database.pool_timeout + getattr(database, "statement_timeout", 0)


def test_only_idempotent_requests_are_sent_to_another_replica() -> None:
    assert only("proxy_next_upstream") == ["error", "timeout"]


def test_the_replicas_are_reached_on_the_service_port_never_the_metrics_port() -> None:
    servers = [arguments[0] for block, name, arguments in directives() if name == "server"]
    ports = {int(address.rsplit(":", 1)[1]) for address in servers}
    assert len(servers) >= 2
    assert ports == {default("port")}
    if "metrics" in Settings.model_fields:
        assert default("metrics").port not in ports


def test_the_probes_are_not_served_through_the_balancer() -> None:
    for probe in ("/livez", "/readyz"):
        assert only("return", f"location = {probe}") == ["404"]
