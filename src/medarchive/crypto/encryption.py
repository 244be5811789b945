"""What a store needs to encrypt at rest: the KEK manager and whose key each resource takes.

Data keys are per patient compartment (R4 §3.1.0.7 CompartmentDefinition "Patient"): a
Patient's own record and every resource in its compartment are sealed under that patient's
data key, so shredding one key erases one patient everywhere. A resource is given to the first
patient its compartment parameters name, in the CompartmentDefinition's order (an
Observation's ``subject`` before its ``performer``); Groups and resources outside every
patient compartment use the ``system`` key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from medarchive.crypto.blind import MAX_PREFIX
from medarchive.crypto.kek import KeyManager
from medarchive.fhir.search.entries import IndexEntries

SYSTEM = "system"
BLIND_OWNER = "blind-index"
Owner = Callable[[str, str, IndexEntries], str]
"""(resource type, id, index entries) -> the owner of the data key: ``Patient/<id>`` or
``system``."""

_SHARED = frozenset({"Group"})  # lists of many patients: no single owner


def compartment_owner(spec: Any) -> Owner:
    """The owner function for ``spec``'s Patient CompartmentDefinition."""
    links: dict[str, tuple[str, ...]] = {
        rtype: spec.compartment_params("Patient", rtype)
        for rtype in spec.compartment_types("Patient")}

    def owner(resource_type: str, id: str, entries: IndexEntries) -> str:
        if resource_type == "Patient":
            return f"Patient/{id}"
        params = links.get(resource_type, ())
        if not params or resource_type in _SHARED:
            return SYSTEM
        for param in params:
            for ref in entries.references:
                if ref.param == param and ref.target_type == "Patient" and ref.target_id:
                    return f"Patient/{ref.target_id}"
        return SYSTEM
    return owner


@dataclass(frozen=True)
class Encryption:
    """Encryption at rest as a store is given it by the composition root."""

    kek: KeyManager
    owner: Owner
    max_prefix: int = MAX_PREFIX
