"""Resource validation against the FHIR R4 definitions: the check every write goes through.

``validate_resource`` returns all issues found in one resource (never stopping at the first),
each an :class:`~medarchive.errors.Issue` with a FHIRPath-style location. What is and is not
checked is listed in docs/validation.md. Compiled lookup tables are cached per Spec, so only the
first resource of each type pays for building them.
"""

from __future__ import annotations

import threading
from typing import Any

from medarchive.errors import Issue
from medarchive.fhir.spec import Spec, load_spec
from medarchive.fhir.validate.structure import Walker
from medarchive.fhir.validate.tables import Tables

__all__ = ["validate_resource"]

_tables: dict[int, tuple[Spec, Tables]] = {}
_local = threading.local()


def _walker(spec: Spec) -> Walker:
    walkers: dict[int, Walker] | None = getattr(_local, "walkers", None)
    if walkers is None:
        walkers = _local.walkers = {}
    walker = walkers.get(id(spec))
    if walker is None or walker.spec is not spec:
        entry = _tables.get(id(spec))
        if entry is None or entry[0] is not spec:
            entry = _tables[id(spec)] = (spec, Tables(spec))
        walker = walkers[id(spec)] = Walker(entry[1])
    return walker


def validate_resource(resource: Any, spec: Spec | None = None) -> list[Issue]:
    """Validate one resource's JSON form (R4 §2.6) against the R4 StructureDefinitions.

    Covers the resource's structure, cardinality, primitive formats (§2.24), choice types,
    primitive extensions, required bindings (§4.1), references (§2.3) and contained resources;
    Bundle entries and Parameters resources are validated too. Returns every issue found.
    """
    return _walker(spec or load_spec()).validate(resource)
