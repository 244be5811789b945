"""Reads by id on the event loop (setting ``reads_on_event_loop``): which requests run there,
on which stores, and that everything else still runs in a worker thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from medarchive.app import reads_on_loop
from medarchive.security.guard import classify
from medarchive.settings import Settings
from medarchive.store.base import Store
from medarchive.web.fhir_api import READS_BY_ID

WORKER = "AnyIO worker thread"
SETTINGS = Settings(database_url="memory://", auth="off")  # encryption on, file key manager


@pytest.mark.parametrize("path, expected", [
    ("Patient/p1", True),
    ("Patient/p1/", True),
    ("Patient/p1/_history/2", True),
    ("Patient", False),
    ("Patient/_search", False),
    ("Patient/_history", False),
    ("Patient/$everything", False),
    ("Patient/p1/$everything", False),
    ("Patient/p1/_history", False),
    ("Patient/p1/Observation", False),
    ("metadata", False),
    ("_history", False),
    ("", False),
])
def test_which_paths_are_reads_by_id(path: str, expected: bool) -> None:
    assert (classify("GET", path).name in READS_BY_ID) is expected


class Noting:
    """A store that notes the thread each call of its methods ran on."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.threads: dict[str, set[str]] = {}

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.inner, name)
        if not callable(found):
            return found

        def noted(*args: Any, **kwargs: Any) -> Any:
            self.threads.setdefault(name, set()).add(threading.current_thread().name)
            return found(*args, **kwargs)
        return noted


def test_reads_by_id_run_on_the_event_loop_where_the_store_is_local(
        store: Store, make_client: Callable[..., Any]) -> None:
    noting = Noting(store)
    client = make_client(noting)
    assert client.put("/fhir/Patient/a", json={"resourceType": "Patient", "id": "a"}
                      ).status_code == 201
    noting.threads.clear()
    assert client.get("/fhir/Patient/a").status_code == 200
    assert client.get("/fhir/Patient/a/_history/1").status_code == 200
    assert client.get("/fhir/Patient/missing").status_code == 404
    read_on = noting.threads["read"] | noting.threads["vread"]
    local = getattr(getattr(store, "db", None), "dialect", "sqlite") == "sqlite"
    assert reads_on_loop(SETTINGS, store) is local
    assert (WORKER not in " ".join(read_on)) is local, read_on
    noting.threads.clear()
    assert client.get("/fhir/Patient?_id=a").status_code == 200  # a search: always a thread
    assert all(WORKER in name for names in noting.threads.values() for name in names)
    assert noting.threads


def test_remote_keys_or_the_setting_keep_reads_in_a_thread(store: Store) -> None:
    assert not reads_on_loop(replace(SETTINGS, reads_on_event_loop=False), store)
    assert not reads_on_loop(replace(SETTINGS, encryption_key_manager="vault"), store)
    assert reads_on_loop(replace(SETTINGS, encryption="off", encryption_key_manager="vault"),
                         store) is reads_on_loop(SETTINGS, store)
