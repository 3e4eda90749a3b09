"""How many CPUs this process may really use: CPU affinity intersected with the cgroup quota.

os.cpu_count(), os.sched_getaffinity() and os.process_cpu_count() all ignore a container's CPU
quota, so a pod limited to 2 CPUs on a 64-core node would start 64 workers and thrash. The quota
lives in the cgroup filesystem: v2 `cpu.max` ("quota period" or "max period"), v1
`cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1 means unlimited). Limits nest, so every cgroup from
ours up to the root counts and the smallest wins.
"""

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def quota_from_cpu_max(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 `cpu.max` line, or None when unlimited."""
    quota, _, period = text.strip().partition(" ")
    if quota == "max" or not period:
        return None
    return int(quota) / int(period)


def quota_from_cfs(quota_text: str, period_text: str) -> float | None:
    """CPUs allowed by cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us`, or None."""
    quota, period = int(quota_text), int(period_text)
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def own_cgroup_paths(proc_self_cgroup: str) -> list[str]:
    """Paths of this process's cgroups: the v2 entry ("0::/path") and v1 cpu controllers."""
    paths = []
    for line in proc_self_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "" or "cpu" in controllers.split(","):
            paths.append(path)
    return paths


def cgroup_cpu_limit(root: Path, own_paths: list[str]) -> float | None:
    """The smallest CPU quota on the way from our cgroups up to the root, or None if unlimited.

    In a container with a cgroup namespace our path reads "/", and the root holds our limits.
    """
    limits: list[float] = []
    for mount in (root, root / "cpu", root / "cpu,cpuacct"):
        for own_path in own_paths:
            directory = mount / own_path.lstrip("/")
            while directory.is_relative_to(mount):
                limit = _read_limit(directory)
                if limit is not None:
                    limits.append(limit)
                if directory == mount:
                    break
                directory = directory.parent
    return min(limits, default=None)


def _read_limit(directory: Path) -> float | None:
    cpu_max = directory / "cpu.max"
    if cpu_max.is_file():
        return quota_from_cpu_max(cpu_max.read_text())
    cfs_quota, cfs_period = directory / "cpu.cfs_quota_us", directory / "cpu.cfs_period_us"
    if cfs_quota.is_file() and cfs_period.is_file():
        return quota_from_cfs(cfs_quota.read_text(), cfs_period.read_text())
    return None


def available_cpus(
    affinity: int | None = None,
    cgroup_root: Path = CGROUP_ROOT,
    proc_self_cgroup: Path = PROC_SELF_CGROUP,
) -> int:
    """CPUs this process may use: min(affinity, ceil(quota)), at least 1."""
    if affinity is None:
        affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cpus = affinity or os.cpu_count() or 1
    try:
        own_paths = own_cgroup_paths(proc_self_cgroup.read_text())
    except OSError:
        own_paths = ["/"]
    limit = cgroup_cpu_limit(cgroup_root, own_paths or ["/"])
    if limit is not None:
        # A fractional quota (1.5 CPUs) still runs two workers well: round up, never to zero.
        cpus = min(cpus, math.ceil(limit))
    return max(1, cpus)


def worker_count(web_concurrency: int | None, cpus: int) -> int:
    """WEB_CONCURRENCY when set; otherwise one async worker per available CPU.

    An async worker keeps its core busy on its own; the `2 * cores + 1` rule is for sync workers
    that sit blocked on I/O, and here it would only add context switches and memory.
    """
    return web_concurrency if web_concurrency is not None else max(1, cpus)
