"""Plaintext scratch files of a restore live in memory, never on a disk.

The search-index image of a SQLite backup (indeximage.py) is a SQLite file: SQLite reads it
with random access, so it cannot be streamed, and it holds the index's plaintext clinical
values (codes, dates, values, reference ids). A restore therefore assembles it in a private
folder on a memory file system (``/dev/shm``, tmpfs): it leaves no trace on a disk, nor in
free blocks after its removal. With swap space configured, the kernel may page tmpfs out like
any process memory: use encrypted swap, or none, on database servers.

When the memory file system lacks room (the image is about 5 GB for a million Observations),
``memory_folder`` gives None and ``image_folder`` a private folder on a disk instead: a restore
writes the image there only sealed (sealedfile.py: ciphertext under a key held in memory),
never in plaintext; ``backup verify`` does not restore at all.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MEMORY = Path("/dev/shm")
SHARE = 2
"""At most 1/SHARE of the memory the system has available goes to one scratch image."""


def _tmpfs(path: Path) -> bool:
    try:
        with open("/proc/mounts") as mounts:
            return any(line.split()[1] == str(path) and line.split()[2] == "tmpfs"
                       for line in mounts)
    except OSError:
        return False


def _available() -> int:
    with open("/proc/meminfo") as info:
        for line in info:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def has_room(need: int, where: Path = MEMORY) -> bool:
    """Whether ``where`` is a memory file system with room for ``need`` more bytes."""
    if not _tmpfs(where):
        return False
    stat = os.statvfs(where)
    return need <= stat.f_bavail * stat.f_frsize and need <= _available() // SHARE


@contextmanager
def memory_folder(need: int, where: Path = MEMORY) -> Iterator[Path | None]:
    """A private (0700) folder in memory with room for ``need`` bytes, removed with whatever
    it holds afterwards; None when there is no such room."""
    if not has_room(need, where):
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="medarchive-restore-", dir=where))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def disk_room(need: int, where: Path) -> bool:
    """Whether the file system of ``where`` has ``need`` bytes free."""
    return shutil.disk_usage(where).free >= need


@contextmanager
def image_folder(need: int, disk: Path, where: Path = MEMORY) -> Iterator[tuple[Path, bool]]:
    """A private (0700) folder for ``need`` bytes, in memory when it has room there, else in
    the folder ``disk``, removed with whatever it holds afterwards (also on failure); and
    whether it is in memory."""
    memory = has_room(need, where)
    folder = Path(tempfile.mkdtemp(prefix="medarchive-restore-", dir=where if memory else disk))
    try:
        yield folder, memory
    finally:
        shutil.rmtree(folder, ignore_errors=True)
