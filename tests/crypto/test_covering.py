"""Covering parameters (crypto.covering): a blinded row another parameter holds is written
once, and every search still finds exactly what it found with every row written."""

from __future__ import annotations

import hmac
from base64 import urlsafe_b64encode
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medarchive.crypto.blind import BlindIndex
from medarchive.crypto.covering import covering
from medarchive.crypto.encryption import Encryption, compartment_owner
from medarchive.crypto.kek import LocalKeyFile
from medarchive.fhir.search.index import build_indexer
from medarchive.fhir.search.parse import parse_search
from medarchive.store import open_store
from medarchive.store.base import Change
from medarchive.store.memory import MemoryStore
from medarchive.store.sql.store import SqlStore

PATIENTS: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "ann",
     "name": [{"family": "Smith", "given": ["Ann"]}]},
    {"resourceType": "Patient", "id": "lee",
     "name": [{"text": "Dr. Anna Lee Smithers", "family": "Smithers", "given": ["Anna", "Lee"],
               "prefix": ["Dr."]}],
     "address": [{"line": ["1 Main St", "Apt 2"], "city": "Lee", "state": "MA",
                  "postalCode": "02139", "country": "US"}]},
    {"resourceType": "Patient", "id": "mul",
     "name": [{"family": "Müller", "given": ["Smith"]}, {"text": "Ann Müller"}],
     "address": [{"city": "Boston", "state": "Ann", "postalCode": "Lee"}]},
    {"resourceType": "Patient", "id": "caps",  # a text equal to a part but as written
     "name": [{"family": "Smith", "given": ["Ann"]}, {"text": "SMITH"}]},
    {"resourceType": "Patient", "id": "none", "gender": "female"},
    {"resourceType": "Person", "id": "per", "name": [{"family": "Lee", "given": ["Ann"]}],
     "address": [{"city": "Smithfield"}]},
    {"resourceType": "RelatedPerson", "id": "rel", "patient": {"reference": "Patient/ann"},
     "name": [{"text": "Ann Smith"}]},
]
T0 = datetime(2024, 1, 1, tzinfo=UTC)
TEXTS = ["smi", "Smith", "SMITH", "smithers", "ann", "Ann", "anna lee", "lee", "Lee", "dr", "dr.",
         "mül", "muller", "bos", "1 main", "main", "ma", "021", "02139", "us", "US", "apt"]
PARAMS = ["name", "family", "given", "phonetic", "name:exact", "given:exact",
          "phonetic:exact", "address", "address:exact", "address-city", "address-state",
          "address-postalcode", "address-country", "_content"]


def test_the_official_r4_parameters_that_cover_others(spec: Any) -> None:
    assert dict(covering(spec, "Patient")) == {
        "name": ("family", "given"),
        "phonetic": ("family", "given", "name"),
        "address": ("address-city", "address-country", "address-postalcode",
                    "address-state"),
        "_content": ("address-city", "address-country", "address-state", "family", "given",
                     "name")}
    assert dict(covering(spec, "RelatedPerson"))["phonetic"] == ("name",)
    assert "_content" not in covering(spec, "Observation")  # no human-readable string param


class _Param:
    def __init__(self, expression: str, url: str) -> None:
        self.type, self.expression, self.url = "string", expression, url


class _Spec:
    def __init__(self, params: dict[str, _Param]) -> None:
        self.params = params

    def search_params(self, resource_type: str) -> dict[str, _Param]:
        return self.params


def test_a_hospitals_own_parameter_never_covers_nor_is_covered() -> None:
    official = "http://hl7.org/fhir/SearchParameter/"
    own = _Spec({"name": _Param("Patient.name", official + "Patient-name"),
                 "family": _Param("Patient.name.family", "https://hospital.example/family"),
                 "given": _Param("Patient.name.given", official + "individual-given"),
                 "alias": _Param("Patient.name", "https://hospital.example/alias")})
    assert dict(covering(own, "Patient")) == {"name": ("given",), "_content": ("given", "name")}


@given(key=st.binary(min_size=1, max_size=100), text=st.text(max_size=12))
def test_prefix_chains_are_rfc_2104_hmacs_of_each_prefix(key: bytes, text: str) -> None:
    def link(value: str) -> bytes:
        return hmac.digest(key, f"c\x1fname\x1f{value}".encode(), "sha256")[:6]
    blind = BlindIndex(key, max_prefix=8)
    links = b"".join(link(text[:n]) for n in range(1, min(len(text), 8) + 1))
    assert blind.chain("name", text) == urlsafe_b64encode(links).decode()


def _write(store: Any, resources: list[dict[str, Any]]) -> None:
    store.write([Change(r["resourceType"], r["id"], 1, 0, T0, False, repr(r).encode(), r)
                 for r in resources])


def _open(url: str, folder: Path, spec: Any) -> SqlStore:
    encryption = Encryption(LocalKeyFile(folder / "k.kek"), compartment_owner(spec))
    store = open_store(url, build_indexer(spec), encryption=encryption, pool_size=2)
    assert isinstance(store, SqlStore)
    return store


def _string_rows(store: SqlStore, rtype: str) -> dict[str, int]:
    with store.db.reading() as cur:
        cur.execute(store.db.sql("SELECT param, COUNT(*) FROM idx_string WHERE res_type = ? "
                                 "GROUP BY param"), [rtype])
        return dict(cur.fetchall())


def _agree(store: SqlStore, memory: MemoryStore, spec: Any) -> None:
    for rtype in ("Patient", "Person", "RelatedPerson"):
        for param in PARAMS:
            if param not in spec.search_params(rtype) and param.split(":")[0] not in \
                    spec.search_params(rtype):
                continue
            for text in TEXTS:
                query = parse_search(spec, rtype, [(param, text)], default_count=50,
                                     max_count=50).query
                expected = [v.id for v in memory.search(query)]
                assert [v.id for v in store.search(query)] == expected, (rtype, param, text)
                assert store.count(query) == len(expected), (rtype, param, text)
        for param in ("name", "phonetic", "given", "address", "address-city"):
            for missing in ("true", "false"):
                query = parse_search(spec, rtype, [(f"{param}:missing", missing)],
                                     default_count=50, max_count=50).query
                assert [v.id for v in store.search(query)] == \
                    [v.id for v in memory.search(query)], (rtype, param, missing)


def test_covered_rows_are_written_once_and_every_search_agrees(sql_url: str, tmp_path: Path,
                                                                spec: Any) -> None:
    memory = MemoryStore(build_indexer(spec))
    _write(memory, PATIENTS)
    store = _open(sql_url, tmp_path, spec)
    try:
        _write(store, PATIENTS[:1])
        # Smith and Ann: one prefix chain each (not again under name, phonetic and _content):
        # as many rows as the plaintext index has
        assert _string_rows(store, "Patient") == {"family": 1, "given": 1}
        _write(store, PATIENTS[1:])
        _agree(store, memory, spec)
        with pytest.raises(Exception, match="not supported"):
            store.search(parse_search(spec, "Patient", [("name:contains", "mit")],
                                      default_count=5, max_count=5).query)
    finally:
        store.close()


def test_rows_written_before_covering_are_still_found_once(sql_url: str, tmp_path: Path,
                                                          spec: Any) -> None:
    memory = MemoryStore(build_indexer(spec))
    _write(memory, PATIENTS)
    store = _open(sql_url, tmp_path, spec)
    try:
        assert store.keyring is not None
        store.keyring.blind.cover(None)  # as an earlier version wrote them: every row
        _write(store, PATIENTS[:3])
        assert _string_rows(store, "Patient")["phonetic"] > 0
        store.keyring.blind.cover(spec)
        _write(store, PATIENTS[3:])
        _agree(store, memory, spec)
    finally:
        store.close()
