"""A PostgreSQL restore copies the tables of a search-index image in processes of their own.

The index is most of the rows of a restore (20-40 a resource), and feeding them to ``COPY``
is Python work per row (SQLite hands out a tuple, psycopg encodes it) that holds the
interpreter lock: two threads of one process loaded no faster than one, while the server's
``COPY`` and index builds left the second core half idle. So each image table is a job for a
worker process (``spawn``: nothing of the parent's threads, pools or keys is inherited but
what the job carries): it opens the image read-only, reads the table in the order of its
costliest index and ``COPY``s the rows into the scratch schema in one transaction. The
parent's threads wait for those jobs, build each table's indexes as soon as it is loaded
(server work, while the workers load the next tables) and load the other rows meanwhile
(restore.py).

A sealed image (assembled on a disk, sealedfile.py) is read through the sealed VFS in the
worker too: the job carries its key, over the worker's pipe, never to a file. A failing job
stops the others from starting; the caller drops the scratch schema, so nothing is restored.
As with any ``spawn``, a program that calls ``restore`` from a script must guard the script's
body with ``if __name__ == "__main__":`` (the workers import the main module again; the CLI
and the benchmarks do).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from medarchive.backup import sealedfile
from medarchive.backup.indeximage import image_rows
from medarchive.backup.loading import copy_rows


@dataclass(frozen=True)
class TableJob:
    """One index table of the image into the scratch schema at ``url``: its ``columns`` (the
    target's that the image has; ``flags``: boolean there, integers in SQLite)."""

    url: str
    image: str
    sealed: bytes | None
    table: str
    columns: tuple[str, ...]
    flags: tuple[bool, ...]


def run(job: TableJob) -> int:
    """Do ``job`` (in a worker process) in one transaction; returns the rows copied."""
    image = Path(job.image)
    if job.sealed is not None:
        sealedfile.import_key(image, job.sealed)
    names = list(job.columns)
    with psycopg.connect(job.url) as conn, conn.transaction(), conn.cursor() as cur:
        cur.execute("SET LOCAL synchronous_commit = off")
        batches = image_rows(image, job.table, names, ordered=True)
        if any(job.flags):
            batches = (_flagged(rows, job.flags) for rows in batches)
        return copy_rows(cur, job.table, names, ((len(rows), rows) for rows in batches), True)


def _flagged(rows: list[tuple[Any, ...]], flags: tuple[bool, ...]) -> list[tuple[Any, ...]]:
    return [tuple(v if not flag or v is None else bool(v) for v, flag in zip(row, flags,
                                                                             strict=True))
            for row in rows]


class Loaders:
    """Worker processes that run ``TableJob``s in the order they are submitted; ``wait``
    (from any thread) gives a job's result, and its failure cancels the jobs not yet started,
    so that the threads waiting for them fail fast too."""

    def __init__(self, pool: ProcessPoolExecutor) -> None:
        self.pool = pool
        self.submitted: list[Future[int]] = []

    def submit(self, job: TableJob) -> Future[int]:
        future = self.pool.submit(run, job)
        self.submitted.append(future)
        return future

    def wait(self, future: Future[int]) -> int:
        try:
            return future.result()
        except BaseException:
            for other in self.submitted:
                other.cancel()
            raise


@contextmanager
def loaders(workers: int) -> Iterator[Loaders]:
    """``workers`` processes for ``TableJob``s, started at once (their start-up overlaps
    what the caller does before its first job); on leaving, jobs not started are cancelled
    and running ones waited for (their transactions over: the scratch schema can be dropped)."""
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        for _ in range(workers):
            pool.submit(_ready)
        yield Loaders(pool)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ready() -> None:
    """A job that does nothing: makes the pool start its processes."""
