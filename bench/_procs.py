"""Processes seen through /proc: free ports, who listens on a port, CPU time used by whom."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TCP_LISTEN = "0A"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class _Stat:
    ppid: int
    cpu_ticks: int


def _stats() -> dict[int, _Stat]:
    """Parent and CPU ticks of every process (the ones that vanish while being read are skipped).

    CPU ticks are utime + stime + cutime + cstime: the children's part holds what exited (and was
    reaped) children used, so a tree's total keeps counting a worker that has been replaced.
    """
    stats: dict[int, _Stat] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may itself contain spaces and parentheses.
        fields = text[text.rindex(")") + 2 :].split()
        # fields[0] is field 3 of proc(5): ppid is field 4, utime..cstime are fields 14..17.
        ticks = sum(int(value) for value in fields[11:15])
        stats[int(entry.name)] = _Stat(ppid=int(fields[1]), cpu_ticks=ticks)
    return stats


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by `root` and all its descendants, living or reaped."""
    stats = _stats()
    children: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        children.setdefault(stat.ppid, []).append(pid)
    total = 0
    pending = [root]
    while pending:
        pid = pending.pop()
        if pid in stats:
            total += stats[pid].cpu_ticks
        pending.extend(children.get(pid, ()))
    return total / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs together have spent on anything but idling, since boot."""
    # First line of /proc/stat: "cpu user nice system idle iowait irq softirq steal ...".
    fields = [int(value) for value in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rpartition(":")[2], 16)
            if local_port == port and fields[3] == TCP_LISTEN:
                inodes.add(fields[9])
    return inodes


def listening_pid(port: int) -> int | None:
    """The topmost process holding a listening socket on `port` (e.g. the PostgreSQL postmaster).

    Found by socket inode, so it works for a server started by someone else's code; None when the
    owner cannot be seen (another user's process, without root).
    """
    targets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    holders: set[int] = set()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            descriptors = list((entry / "fd").iterdir())
        except OSError:
            continue
        for descriptor in descriptors:
            try:
                if os.readlink(descriptor) in targets:
                    holders.add(int(entry.name))
                    break
            except OSError:
                continue
    stats = _stats()
    tops = [pid for pid in holders if pid in stats and stats[pid].ppid not in holders]
    return min(tops) if tops else None
