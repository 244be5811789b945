"""Bad input never breaks the router: any method, path, query, headers and body give a response
that is not a 500 (501 marks what is not supported), and every error response is an
OperationOutcome (R4 §3.1.0.6)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medarchive.service.request import FhirRequest
from medarchive.service.router import Router
from medarchive.store.memory import MemoryStore

SEGMENTS = st.sampled_from(["Patient", "Observation", "Bundle", "Nope", "metadata", "_history",
                            "_search", "$validate", "$op", "a", "id-1", "1", "x y", "", "..",
                            "%", "_history", "9" * 30])
PARAMS = st.sampled_from(["_count", "_offset", "_summary", "_elements", "_format", "_pretty",
                          "_since", "_snapshot", "_sort", "_total", "_type", "_id", "name",
                          "identifier", "birthdate", "subject", "mode", "nonsense", "_include"])
VALUES = st.sampled_from(["", "1", "-1", "true", "count", "xml", "json", "Patient", "a,b",
                          "2024", "ge2024-01-01", "x|y", "zz:zz", "name", "99999999999999999999",
                          "\\,", "Patient/1"])
HEADERS = st.dictionaries(
    st.sampled_from(["if-match", "if-none-match", "if-none-exist", "prefer", "accept",
                     "content-type", "if-modified-since"]),
    st.sampled_from(['W/"1"', "garbage", "return=minimal", "handling=strict", "return=x",
                     "application/fhir+xml", "application/json-patch+json", "*/*",
                     "identifier=a|b", "text/plain", "Mon, 01 Jan 2024 00:00:00 GMT"]),
    max_size=3)
BODIES = st.one_of(
    st.just(b""), st.binary(max_size=40),
    st.sampled_from([b"{}", b"[]", b'{"resourceType":"Patient"}', b'{"resourceType":"Bundle",'
                     b'"type":"transaction","entry":[{"request":{"method":"POST","url":"Patient"'
                     b'},"resource":{"resourceType":"Patient"}}]}', b'[{"op":"add"}]',
                     b'{"resourceType":"Patient","id":"a","meta":"x"}']),
    st.recursive(st.none() | st.integers(-1000, 1000) | st.text(max_size=4),
                 lambda inner: st.lists(inner, max_size=3) |
                 st.dictionaries(st.sampled_from(["resourceType", "id", "entry", "type",
                                                  "request", "resource", "meta"]), inner,
                                 max_size=3), max_leaves=10).map(orjson.dumps))


@pytest.fixture(scope="module")
def fuzz_router(spec: Any, indexer: Any) -> Router:
    from medarchive.service.repository import Repository
    from medarchive.service.router import Limits
    repository = Repository(MemoryStore(indexer), spec, new_id=lambda: "id-1",
                            now=lambda: datetime.now(UTC))
    return Router(repository, base="http://test/fhir", limits=Limits(10_000, 5, 10, 5, 10))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "TRACE"]),
       path=st.lists(SEGMENTS, max_size=4).map("/".join),
       query=st.lists(st.tuples(PARAMS, VALUES), max_size=3),
       headers=HEADERS, body=BODIES)
def test_any_request_gets_a_clean_answer(fuzz_router: Router, method: str, path: str,
                                         query: list[tuple[str, str]], headers: dict[str, str],
                                         body: bytes) -> None:
    response = fuzz_router.handle(FhirRequest(method, path, tuple(query), headers, body))
    assert 200 <= response.status < 500 or response.status == 501, response.content()[:300]
    content = response.content()
    if response.status >= 400:
        assert orjson.loads(content)["resourceType"] == "OperationOutcome"
    elif content:
        assert isinstance(orjson.loads(content), dict)
