"""``ray stop`` for one Ray cluster among several on a machine (the launcher test's head).

``ray stop`` (and ``ray down``, which runs it on the head) stops every Ray process on the
machine, whoever started it. This stops only the processes whose command line names the
cluster's own temp dir (GCS, raylet, dashboard, monitors: each is given its session folder)
and their descendants (workers rename themselves ``ray::...`` and lose their arguments).
"""

from __future__ import annotations

import os
import signal
import sys
import time


def _processes() -> dict[int, tuple[int, bytes]]:
    """pid -> (parent pid, command line) for every process we can read."""
    table: dict[int, tuple[int, bytes]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                table[int(entry)] = (ppid, f.read().replace(b"\0", b" "))
        except (OSError, ValueError, IndexError):
            continue
    return table


def cluster_pids(marker: str) -> set[int]:
    """Processes naming ``marker`` and all their descendants, never this one or its callers."""
    table = _processes()
    own = {os.getpid()}
    pid = os.getpid()
    while pid in table and pid > 1:
        pid = table[pid][0]
        own.add(pid)
    found = {pid for pid, (_, cmd) in table.items() if marker.encode() in cmd} - own
    grew = True
    while grew:
        more = {pid for pid, (ppid, _) in table.items() if ppid in found} - own - found
        found |= more
        grew = bool(more)
    return found


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, their children, ...)."""
    table = _processes()
    found: set[int] = set()
    parents = {pid}
    while parents:
        parents = {p for p, (ppid, _) in table.items() if ppid in parents} - found
        found |= parents
    return found


def kill(pid: int, sig: int = signal.SIGTERM) -> None:
    """Signal ``pid`` if it still exists."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop(marker: str, grace_s: float = 10.0) -> list[int]:
    """SIGTERM the cluster's processes, SIGKILL what is left after ``grace_s``; their pids."""
    pids = cluster_pids(marker)
    for pid in pids:
        kill(pid)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and cluster_pids(marker) & pids:
        time.sleep(0.2)
    for pid in cluster_pids(marker):
        kill(pid, signal.SIGKILL)
    return sorted(pids)


if __name__ == "__main__":
    stopped = stop(sys.argv[1])
    print(f"stopped {len(stopped)} processes of the Ray cluster in {sys.argv[1]}")
