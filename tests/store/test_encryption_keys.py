"""Which data key a write seals with (store/sql/crypto.py ``Keyring.draft`` and ``keys_for``), on
SQLite and PostgreSQL: keys made or remembered before the write transaction are only used once
the transaction reads that they are the owner's active key; a remembered key is not unwrapped
again; a new key is wrapped inside the write transaction (a KEK rotation's rewrap batches wait
for it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from search_helpers import indexer, put, spec

from medarchive.crypto.encryption import Encryption, compartment_owner
from medarchive.crypto.kek import LocalKeyFile
from medarchive.store import open_store
from medarchive.store.sql.keyadmin import reencrypt, shred
from medarchive.store.sql.store import SqlStore

ANN = {"resourceType": "Patient", "id": "ann", "name": [{"family": "Smithers"}]}
CARL = {"resourceType": "Patient", "id": "carl", "name": [{"family": "Carlsson"}]}


def observation(id: str, patient: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": id, "status": "final",
            "code": {"text": "pulse"}, "subject": {"reference": f"Patient/{patient}"}}


class CountingKeyFile(LocalKeyFile):
    """A key file that counts wraps and unwraps, and wraps made inside a write."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.wraps = self.unwraps = 0
        self.writing = False
        self.wrapped_inside = 0

    def wrap(self, key: bytes, context: bytes) -> tuple[str, bytes]:
        self.wraps += 1
        self.wrapped_inside += self.writing
        return super().wrap(key, context)

    def unwrap(self, kek: str, wrapped: bytes, context: bytes) -> bytes:
        self.unwraps += 1
        return super().unwrap(kek, wrapped, context)


@pytest.fixture
def opened(sql_url: str, tmp_path: Path) -> Iterator[Any]:
    stores: list[SqlStore] = []

    def open_() -> tuple[SqlStore, CountingKeyFile]:
        kek = CountingKeyFile(tmp_path / "k.kek")
        store = open_store(sql_url, indexer(), pool_size=2,
                           encryption=Encryption(kek, compartment_owner(spec())))
        assert isinstance(store, SqlStore)
        stores.append(store)
        writing = store.db.writing

        @contextmanager
        def watched() -> Iterator[Any]:
            with writing() as cur:
                kek.writing = True
                try:
                    yield cur
                finally:
                    kek.writing = False
        store.db.writing = watched  # type: ignore[method-assign]
        return store, kek
    yield open_
    for store in stores:
        store.close()


def kids(store: SqlStore, owner: str) -> tuple[int | None, list[int]]:
    """(the active key, every key) of ``owner``."""
    with store.db.reading() as cur:
        cur.execute(store.db.sql("SELECT kid, retired FROM data_key WHERE owner = ?"),
                    (owner,))
        rows = cur.fetchall()
    active = [int(kid) for kid, retired in rows if retired is None]
    return (active[0] if active else None), sorted(int(kid) for kid, _ in rows)


def sealed_by(store: SqlStore, rtype: str, rid: str) -> list[int]:
    """The data key of each version of ``rtype/rid``, oldest first."""
    with store.db.reading() as cur:
        cur.execute(store.db.sql(
            "SELECT v.kid FROM resource_version v JOIN resource r ON r.rid = v.rid "
            "WHERE r.res_type = ? AND r.res_id = ? ORDER BY v.version"), (rtype, rid))
        return [int(row[0]) for row in cur.fetchall()]


def test_a_new_patient_whose_key_exists_is_sealed_under_that_key(opened: Any) -> None:
    store, _ = opened()
    put(store, observation("o1", "carl"))  # carl's key is made before carl is stored
    active, every = kids(store, "Patient/carl")
    put(store, CARL)  # drafted a new key for carl: it must give way to the existing one
    assert kids(store, "Patient/carl") == (active, every)
    assert sealed_by(store, "Patient", "carl") == [active]
    fresh, _ = opened()
    assert fresh.read("Patient", "carl").resource() == CARL  # type: ignore[union-attr]


def test_a_remembered_key_is_used_only_while_it_is_the_active_one(opened: Any) -> None:
    server, _ = opened()
    admin, _ = opened()
    put(server, ANN, observation("o1", "ann"))  # the server remembers ann's key
    old, _ = kids(server, "Patient/ann")
    reencrypt(admin.keyring, admin.owner_of, "ann", destroy_old=True)  # another process
    new, _ = kids(admin, "Patient/ann")
    assert new != old
    put(server, observation("o2", "ann"))
    assert sealed_by(server, "Observation", "o2") == [new]
    shred(admin.keyring, "ann")
    put(server, observation("o3", "ann"))
    after, every = kids(server, "Patient/ann")
    assert after is not None and new is not None
    assert every == sorted([new, after]) and sealed_by(server, "Observation", "o3") == [after]
    reader, _ = opened()
    assert reader.read("Observation", "o3") is not None


def test_keys_are_wrapped_in_the_write_and_not_unwrapped_again(opened: Any) -> None:
    store, kek = opened()
    kek.wraps = kek.unwraps = 0  # the blind-index key, made at the first start
    put(store, ANN)
    assert (kek.wraps, kek.wrapped_inside) == (1, 1)  # ann's, in the transaction
    for n in range(3):
        put(store, observation(f"o{n}", "ann"))
    assert (kek.wraps, kek.unwraps) == (1, 0)
    other, other_kek = opened()  # another process: ann's key is unwrapped once
    before = other_kek.unwraps
    put(other, observation("o9", "ann"))
    put(other, observation("o10", "ann"))
    assert other_kek.unwraps == before + 1
