"""JSON Patch (RFC 6902) for the patch interaction (R4 §3.1.0.7)."""

from __future__ import annotations

import base64

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medarchive.errors import BadRequest, NotImplementedYet, Unprocessable
from medarchive.fhir.patch import JSON_PATCH, apply_json_patch, check_json_patch, patch_from_binary

DOC = {"resourceType": "Patient", "id": "a", "active": True, "name": [{"family": "Doe"}]}


def test_apply_json_patch() -> None:
    out = apply_json_patch(DOC, [{"op": "replace", "path": "/active", "value": False},
                                 {"op": "add", "path": "/name/0/given", "value": ["Jane"]},
                                 {"op": "test", "path": "/id", "value": "a"}])
    assert out["active"] is False and out["name"][0]["given"] == ["Jane"]
    assert DOC["active"] is True and "given" not in DOC["name"][0]


@pytest.mark.parametrize("ops", [
    {"op": "add"}, [1], [{"op": "bogus", "path": "/a"}], [{"op": "add", "path": "/a"}],
    [{"op": "replace", "path": "active", "value": 1}], [{"op": "move", "path": "/a"}],
    [{"op": "copy", "path": "/a", "from": "x"}]])
def test_malformed_patches_are_400(ops: object) -> None:
    with pytest.raises(BadRequest):
        apply_json_patch(DOC, ops)


@pytest.mark.parametrize("ops", [
    [{"op": "remove", "path": "/missing"}],
    [{"op": "test", "path": "/active", "value": False}],
    [{"op": "add", "path": "/name/9/family", "value": "x"}],
    [{"op": "replace", "path": "", "value": [1]}]])
def test_inapplicable_patches_are_422(ops: object) -> None:
    with pytest.raises(Unprocessable):
        apply_json_patch(DOC, ops)


OPS = st.fixed_dictionaries({"op": st.sampled_from(["add", "remove", "replace", "move", "copy",
                                                    "test", "nope"]),
                             "path": st.sampled_from(["", "/", "/active", "/name/0", "/x/y",
                                                      "bad"])},
                            optional={"value": st.integers(), "from": st.sampled_from(
                                ["/active", "/name", "x"])})


@given(st.lists(OPS, max_size=4))
def test_any_patch_applies_or_fails_cleanly(ops: list[dict[str, object]]) -> None:
    try:
        out = apply_json_patch(DOC, ops)
    except (BadRequest, Unprocessable):
        return
    assert isinstance(out, dict)


def test_check_json_patch_returns_the_operations() -> None:
    ops = [{"op": "remove", "path": "/a"}]
    assert check_json_patch(ops) is ops


def test_patch_from_binary() -> None:
    ops = [{"op": "remove", "path": "/active"}]
    binary = {"resourceType": "Binary", "contentType": JSON_PATCH,
              "data": base64.b64encode(orjson.dumps(ops)).decode()}
    assert patch_from_binary(binary) == ops
    with pytest.raises(NotImplementedYet):
        patch_from_binary({"resourceType": "Parameters"})
    with pytest.raises(BadRequest):
        patch_from_binary({**binary, "data": "!!!"})
    with pytest.raises(BadRequest):
        patch_from_binary({**binary, "contentType": "text/plain"})
    with pytest.raises(BadRequest):
        patch_from_binary({**binary, "data": base64.b64encode(b"{").decode()})
