"""Parse ``_include`` and ``_revinclude`` (R4 Search §3.1.1.5.14 "Including other resources").

``_include=Observation:subject[:Patient]`` follows the ``subject`` references of the matches;
``_revinclude=Provenance:target`` brings the resources whose ``target`` refers to a match; ``*``
in place of the parameter follows every reference parameter of the source type. The
``:iterate`` modifier (``:recurse`` is its R3 name) applies the inclusion again to what was
included, until nothing new comes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medarchive.errors import BadRequest
from medarchive.fhir.search.query import Include

INCLUDE_PARAMS = ("_include", "_revinclude")


def parse_include(spec: Any, name: str, text: str) -> Include:
    """One ``_include[:iterate]`` or ``_revinclude[:iterate]`` value; 400 when malformed."""
    base, _, modifier = name.partition(":")
    if base not in INCLUDE_PARAMS:
        raise ValueError(name)
    if modifier not in ("", "iterate", "recurse"):
        raise BadRequest(f"modifier :{modifier} is not supported on {base}")
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise BadRequest(f"invalid {base} value {text!r}: expected Type:param[:targetType]")
    source, param = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if not spec.is_resource_type(source):
        raise BadRequest(f"unknown resource type {source!r} in {base}")
    if target is not None and not spec.is_resource_type(target):
        raise BadRequest(f"unknown resource type {target!r} in {base}")
    if param != "*":
        found = spec.search_params(source).get(param)
        if found is None or found.type != "reference":
            raise BadRequest(f"{source} has no reference search parameter {param!r} "
                             f"({base}={text})")
        if target is not None and found.targets and target not in found.targets:
            raise BadRequest(f"{source}.{param} cannot refer to {target} ({base}={text})")
    return Include(source, None if param == "*" else param, target,
                   reverse=base == "_revinclude", iterate=bool(modifier))


def parse_includes(spec: Any, params: Sequence[tuple[str, str]]) -> tuple[Include, ...]:
    """Every ``_include``/``_revinclude`` in ``params``, in order, without duplicates."""
    found = [parse_include(spec, name, text) for name, text in params
             if name.partition(":")[0] in INCLUDE_PARAMS]
    return tuple(dict.fromkeys(found))
