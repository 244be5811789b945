"""The patch interaction's document formats (R4 §3.1.0.7 "patch").

R4 allows JSON Patch (RFC 6902, ``application/json-patch+json``), XML Patch and FHIRPath Patch
(a Parameters resource). MedArchive applies JSON Patch with the ``jsonpatch`` library; the
others are answered 501 by the REST layer. A malformed patch document is a 400; a well-formed one
that cannot be applied to this resource (missing path, failed ``test``) is a 422. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import jsonpatch
import jsonpointer
import orjson

from medarchive.errors import BadRequest, NotImplementedYet, Unprocessable

JSON_PATCH = "application/json-patch+json"
_OPS = {"add": ("value",), "remove": (), "replace": ("value",), "move": ("from",),
        "copy": ("from",), "test": ("value",)}


def _check_pointer(value: Any, where: str) -> None:
    if not isinstance(value, str) or (value and not value.startswith("/")):
        raise BadRequest(f"JSON Patch {where} must be a JSON Pointer ('' or starting with '/')")


def check_json_patch(operations: Any) -> list[dict[str, Any]]:
    """Validate the shape of a JSON Patch document (RFC 6902 §4) without applying it."""
    if not isinstance(operations, list):
        raise BadRequest("a JSON Patch document is a JSON array of operations")
    for number, operation in enumerate(operations):
        where = f"operation {number}"
        if not isinstance(operation, dict):
            raise BadRequest(f"JSON Patch {where} is not an object")
        op = operation.get("op")
        if op not in _OPS:
            raise BadRequest(f"JSON Patch {where}: unknown op {op!r}")
        _check_pointer(operation.get("path"), f"{where} path")
        for member in _OPS[op]:
            if member not in operation:
                raise BadRequest(f"JSON Patch {where} ({op}) needs '{member}'")
        if "from" in _OPS[op]:
            _check_pointer(operation["from"], f"{where} from")
    return operations


def apply_json_patch(resource: dict[str, Any], operations: Any) -> dict[str, Any]:
    """``resource`` with the JSON Patch applied; the input is not modified (RFC 6902)."""
    check_json_patch(operations)
    try:
        result = jsonpatch.JsonPatch(operations).apply(resource)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise Unprocessable(f"JSON Patch test failed: {exc}") from None
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        raise Unprocessable(f"JSON Patch cannot be applied: {exc}") from None
    if not isinstance(result, dict):
        raise Unprocessable("JSON Patch result is not a resource")
    return result


def patch_from_binary(binary: Any) -> Any:
    """The JSON Patch carried by a Binary in a transaction entry (R4 §3.1.0.11.2: PATCH entries
    carry the patch as a Binary with its content type and base64 data)."""
    if not isinstance(binary, dict):
        raise BadRequest("a PATCH entry needs a resource carrying the patch")
    if binary.get("resourceType") == "Parameters":
        raise NotImplementedYet("FHIRPath Patch is not supported; use JSON Patch")
    if binary.get("resourceType") != "Binary" or binary.get("contentType") != JSON_PATCH:
        raise BadRequest(f"a PATCH entry needs a Binary with contentType {JSON_PATCH}")
    try:
        raw = base64.b64decode(binary.get("data", ""), validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise BadRequest("Binary.data is not valid base64") from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the JSON Patch in Binary.data is not JSON: {exc}") from None
