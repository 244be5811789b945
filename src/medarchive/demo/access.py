"""The demo's access relationships: the demo physician account stands in for the whole
medical staff, so it is linked to every demo clinician (Practitioner) and thereby related to
every demo patient they treated (docs/security.md "Relationships")."""

from __future__ import annotations

from typing import Any

from medarchive.demo.hospital import CLINICIANS, practitioner_id


def demo_practitioners() -> list[str]:
    """The ids of every demo clinician."""
    return [practitioner_id(n) for numbers in CLINICIANS.values() for n in numbers]


def relate_demo_user(access: Any, username: str) -> None:
    """Link ``username`` (security.access.Access) to every demo clinician."""
    access.set_attribute(username, "practitioner", demo_practitioners())
