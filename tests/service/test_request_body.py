"""Request bodies: malformed JSON, size and nesting limits (400/413), and response rendering."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medarchive.errors import BadRequest, PayloadTooLarge
from medarchive.service.request import FhirResponse, check_depth, decode_json

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=30)


def depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def nested(levels: int) -> bytes:
    return b'{"a":' * (levels - 1) + b"{}" + b"}" * (levels - 1)


@given(JSON, st.integers(min_value=1, max_value=8))
def test_depth_limit_matches_the_nesting(value: object, limit: int) -> None:
    body = orjson.dumps(value)
    if depth(value) > limit:
        with pytest.raises(BadRequest, match="nesting"):
            decode_json(body, max_depth=limit)
    else:
        assert decode_json(body, max_depth=limit) == value


def test_depth_limit_boundaries() -> None:
    assert decode_json(nested(10), max_depth=10)
    with pytest.raises(BadRequest):
        decode_json(nested(11), max_depth=10)
    with pytest.raises(BadRequest):
        decode_json(b"[" * 5000 + b"]" * 5000, max_depth=64)  # past orjson's own limit
    check_depth([[[]]], 3)
    with pytest.raises(BadRequest):
        check_depth([[[]]], 2)


@pytest.mark.parametrize("body", [b"", b"   ", b"{", b'{"a":}', b"\xff\xfe", b"NaN",
                                  b'{"a":1}{"b":2}'])
def test_malformed_bodies_are_400(body: bytes) -> None:
    with pytest.raises(BadRequest):
        decode_json(body, max_depth=10)


@given(st.binary(max_size=60))
def test_arbitrary_bytes_parse_or_give_400(body: bytes) -> None:
    try:
        value = decode_json(body, max_depth=10)
    except BadRequest:
        return
    assert value == orjson.loads(body)


def test_size_limit_is_413() -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        decode_json(b'{"resourceType":"Patient"}', max_depth=5, max_bytes=10)
    assert caught.value.status == 413


def test_response_serialises_stored_bytes_untouched_unless_pretty() -> None:
    stored = b'{"resourceType":"Patient","id":"a"}'
    assert FhirResponse(200, body=stored).content() is stored
    pretty = FhirResponse(200, body=stored, pretty=True).content()
    assert pretty.startswith(b"{\n  ") and orjson.loads(pretty) == orjson.loads(stored)
    assert FhirResponse(204).content() == b""
    assert FhirResponse(200, resource={"a": orjson.Fragment(stored)}).content() == \
        b'{"a":' + stored + b"}"
