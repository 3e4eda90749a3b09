"""The `default-replicas` row: two replicas of a project behind the nginx.conf it ships.

Each replica is `uv run serve` with the row's usual settings plus DB__REPLICAS=2, so the two share
the connection budget of the one-replica row; nginx (Debian's) runs the project's
deploy/nginx/nginx.conf as tests/nginx.py runs it (only its port, upstream addresses and paths
changed). The row is measured as one app: wrk talks to nginx, and its CPU is nginx's and both
replicas' together.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from bench._errors import BenchError
from bench._procs import free_port, tree_cpu_seconds
from bench._servers import Server, start
from tests import nginx
from tests.services import ServiceError

REPLICAS = 2


@dataclass
class Balanced(Server):
    """nginx (the process, port and log of this Server) in front of its replicas."""

    replicas: list[Server] = field(default_factory=list)

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.process.pid) + sum(
            replica.cpu_seconds() for replica in self.replicas
        )

    def terminate(self) -> None:
        super().terminate()
        for replica in self.replicas:
            replica.terminate()

    def wait_ready(self, path: str) -> None:
        for replica in self.replicas:
            replica.wait_ready(path)
        super().wait_ready(path)


def start_balanced(
    stack: ExitStack,
    name: str,
    command: list[str],
    *,
    project: Path,
    env_for: Mapping[int, Mapping[str, str]],
    workdir: Path,
) -> Balanced:
    """Start the replicas (one per port of `env_for`) and nginx; everything stopped by `stack`."""
    replicas = []
    for number, (port, env) in enumerate(env_for.items(), start=1):
        replica = start(
            f"{name}-{number}",
            command,
            cwd=project,
            env={**env, "DB__REPLICAS": str(len(env_for))},
            port=port,
            log=workdir / f"{name}-{number}.log",
        )
        stack.callback(replica.stop)
        replicas.append(replica)
    addresses = [f"127.0.0.1:{replica.port}" for replica in replicas]
    try:
        proxy = stack.enter_context(nginx.running(project, addresses))
    except ServiceError as error:
        raise BenchError(f"cannot start nginx for {name}: {error}") from error
    return Balanced(name, proxy.process, proxy.port, proxy.root / "nginx.out", replicas)


def replica_ports() -> list[int]:
    return [free_port() for _ in range(REPLICAS)]
