"""CPU time of processes from Linux /proc, for benchmarks on a shared machine: per-process
user + system seconds, of a process tree (servers and their workers) and of the PostgreSQL
server processes serving a benchmark's connections."""

from __future__ import annotations

import os
from pathlib import Path


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def pid_cpu(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used so far (Linux /proc), 0 if gone."""
    try:
        fields = _stat(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int) -> dict[int, float]:
    """CPU time of ``root`` and of its live descendants (the materializer's worker processes),
    per pid."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_stat(int(entry.name))[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return {pid: pid_cpu(pid) for pid in tree}


def pg_backends_cpu(url: str, app: str) -> dict[int, float]:
    """CPU time of the PostgreSQL server processes serving connections named ``app``: on
    PostgreSQL the inserting is done there, on the same cores."""
    import psycopg
    with psycopg.connect(url, autocommit=True) as conn:
        pids = [row[0] for row in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,))]
    return {pid: pid_cpu(pid) for pid in pids}


def used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two samples (processes started between them count whole)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
