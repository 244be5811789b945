"""Collects one patient's resources with their ids, and renders references and timestamps.

The same plan is written two ways: as a transaction Bundle whose entries are POSTed under
``urn:uuid:`` full URLs and refer to each other by those URNs (R4 §3.1.0.11.2, "Resolving
references in Bundles"), or as flat resources whose ``id`` is that same uuid and whose
references are ``Type/id`` (bulk NDJSON). The uuids come from a seeded generator, so the output
is identical for the same seed, byte for byte.
"""

from __future__ import annotations

import random
from datetime import date
from functools import lru_cache
from typing import Any

from medarchive.demo.hospital import TIMEZONE


@lru_cache(maxsize=65536)
def day_text(day: int) -> str:
    """An R4 ``date`` for a proleptic ordinal."""
    return date.fromordinal(day).isoformat()


def stamp(day: int, minute: int) -> str:
    """An R4 ``dateTime``/``instant`` (seconds and zone given) in the hospital's time zone."""
    day += minute // 1440
    minute %= 1440
    return f"{day_text(day)}T{minute // 60:02d}:{minute % 60:02d}:00{_ZONE}"


def _zone() -> str:
    offset = TIMEZONE.utcoffset(None)
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


_ZONE = _zone()


def new_uuid(rng: random.Random) -> str:
    """A version-4-shaped UUID drawn from ``rng`` (RFC 4122 §4.4 layout, seeded randomness)."""
    value = rng.getrandbits(128)
    value = (value & ~(0xF000 << 64) & ~(0xC000 << 48)) | (0x4000 << 64) | (0x8000 << 48)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


class Writer:
    """The resources of one patient, in the order they were written."""

    __slots__ = ("ids", "patient", "resources", "urn")

    def __init__(self, ids: random.Random, urn: bool) -> None:
        self.ids = ids
        self.urn = urn
        self.resources: list[tuple[str, dict[str, Any]]] = []
        self.patient = ""  # the patient's uid

    def subject(self) -> dict[str, str]:
        """A fresh Reference to the patient (never shared: consumers may rewrite it)."""
        return self.ref("Patient", self.patient)

    def uid(self) -> str:
        return new_uuid(self.ids)

    def start(self, resource_type: str, uid: str) -> dict[str, Any]:
        """A new resource of ``resource_type``; it carries its id only in flat (NDJSON) form."""
        resource: dict[str, Any] = {"resourceType": resource_type}
        if not self.urn:
            resource["id"] = uid
        self.resources.append((uid, resource))
        return resource

    def ref(self, resource_type: str, uid: str) -> dict[str, str]:
        """A Reference (R4 §2.3.0) to a resource of this patient."""
        if self.urn:
            return {"reference": f"urn:uuid:{uid}"}
        return {"reference": f"{resource_type}/{uid}"}

    def bundle(self) -> dict[str, Any]:
        """The transaction Bundle of everything written (R4 §3.1.0.11.2)."""
        return {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": f"urn:uuid:{uid}", "resource": resource,
             "request": {"method": "POST", "url": resource["resourceType"]}}
            for uid, resource in self.resources]}


def shared(resource_type: str, rid: str, display: str | None = None) -> dict[str, str]:
    """A Reference to a shared hospital resource, created by the reference bundle."""
    if display:
        return {"reference": f"{resource_type}/{rid}", "display": display}
    return {"reference": f"{resource_type}/{rid}"}
