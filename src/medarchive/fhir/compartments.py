"""Compartments as search clauses, from the official R4 CompartmentDefinitions.

R4 §3.1.0.7 "compartment search" (``GET [base]/Patient/123/Observation``) and the
``Patient/$everything`` operation both ask which resources belong to one patient (or
encounter, practitioner, related person, device). The CompartmentDefinitions list, per resource
type, the search parameters that link a resource into the compartment; this module turns them
into a ``Compartment`` clause that every store evaluates inside its own query.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from medarchive.errors import BadRequest
from medarchive.fhir.search.query import Compartment

COMPARTMENTS = ("Patient", "Encounter", "RelatedPerson", "Practitioner", "Device")


def compartment_links(spec: Any, compartment: str,
                      types: Iterable[str] | None = None) -> tuple[tuple[str, str], ...]:
    """(resource type, parameter) pairs linking resources into ``compartment`` (R4 §3.1.0.7),
    for ``types`` only when given. A CompartmentDefinition ``{def}`` entry (the compartment
    resource itself) is not a link; ``Compartment.owner`` covers it."""
    try:
        member_types = spec.compartment_types(compartment)
    except KeyError:
        raise BadRequest(f"unknown compartment {compartment!r}") from None
    wanted = member_types if types is None else [t for t in types if t in member_types]
    links = []
    for rtype in sorted(wanted):
        for param in spec.compartment_params(compartment, rtype):
            if param != "{def}":
                links.append((rtype, param))
    return tuple(links)


def compartment_clause(spec: Any, compartment: str, id: str | None,
                       types: Iterable[str] | None = None, *, owner: bool = False) -> Compartment:
    """The clause "in compartment ``compartment``/``id``" (R4 §3.1.0.7); ``id`` None: in the
    compartment of any resource of that type."""
    if compartment not in COMPARTMENTS:
        raise BadRequest(f"unknown compartment {compartment!r}")
    wanted = None if types is None else list(types)
    defines_self = (wanted is None or compartment in wanted) and \
        "{def}" in spec.compartment_params(compartment, compartment)
    return Compartment(compartment, id, compartment_links(spec, compartment, wanted),
                       owner or defines_self)


def member_types(spec: Any, compartment: str) -> frozenset[str]:
    """Resource types that can be in ``compartment`` (R4 CompartmentDefinition.resource)."""
    try:
        return frozenset(t for t in spec.compartment_types(compartment)
                         if spec.compartment_params(compartment, t))
    except KeyError:
        raise BadRequest(f"unknown compartment {compartment!r}") from None
