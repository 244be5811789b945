"""A small fixed indexer so the store contract does not depend on the spec or FHIRPath."""

from __future__ import annotations

from typing import Any

import pytest

from medarchive.fhir.search.dates import date_range
from medarchive.fhir.search.entries import (
    DateEntry,
    IndexEntries,
    NumberEntry,
    QuantityEntry,
    ReferenceEntry,
    StringEntry,
    TokenEntry,
    UriEntry,
)
from medarchive.fhir.search.index import number_range
from medarchive.fhir.search.normalize import normalize_string
from medarchive.store.base import Store


def simple_indexer(resource: dict[str, Any]) -> IndexEntries:
    tokens = [TokenEntry("identifier", i.get("system"), i.get("value"))
              for i in resource.get("identifier", [])]
    if "gender" in resource:
        tokens.append(TokenEntry("gender", None, resource["gender"]))
    strings = [StringEntry("family", normalize_string(n["family"]), n["family"])
               for n in resource.get("name", []) if "family" in n]
    refs = []
    if "subject" in resource:
        kind, _, rid = resource["subject"]["reference"].partition("/")
        refs.append(ReferenceEntry("subject", kind, rid))
    dates = [DateEntry("birthdate", *date_range(resource["birthDate"]))] \
        if "birthDate" in resource else []
    numbers = [NumberEntry("rank", *number_range(str(resource["rank"])))] \
        if "rank" in resource else []
    quantities = []
    if "valueQuantity" in resource:
        q = resource["valueQuantity"]
        quantities.append(QuantityEntry("value-quantity", q.get("system"), q.get("code"),
                                        *number_range(str(q["value"]))))
    uris = [UriEntry("url", resource["url"])] if "url" in resource else []
    params = {e.param for group in (tokens, strings, refs, dates, numbers, quantities, uris)
              for e in group}
    return IndexEntries(tuple(tokens), tuple(strings), tuple(refs), tuple(dates),
                        tuple(numbers), tuple(quantities), tuple(uris), frozenset(params))


@pytest.fixture
def store(store_factory: Any) -> Store:
    return store_factory(simple_indexer)
