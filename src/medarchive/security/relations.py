"""Which patients a clinician has a relationship with (docs/security.md "Relationships").

A patient is related to a user when the patient has a current Encounter (status arrived,
triaged, in-progress or on leave) whose serviceProvider is one of the user's departments or
whose location belongs to one (``Location.managingOrganization``), or when the user's
Practitioner takes part in an Encounter or a CareTeam of the patient. The set is found with
three searches on the store itself, and cached per user until the store changes (keyed by the
store's change sequence number, so a new Encounter or CareTeam counts at once).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from medarchive.fhir.search.parse import parse_search
from medarchive.security.access import Profile
from medarchive.security.authz import CURRENT_ENCOUNTER

LIMIT = 20_000  # resources read per relationship search
_CACHE_SIZE = 256


def _refs(values: Iterable[str], rtype: str) -> str:
    return ",".join(f"{rtype}/{v}" for v in values)


def _patients(resource: dict[str, Any]) -> set[str]:
    found = set()
    for key in ("subject", "patient"):
        ref = (resource.get(key) or {}).get("reference") \
            if isinstance(resource.get(key), dict) else None
        if isinstance(ref, str) and ref.startswith("Patient/"):
            found.add(ref.split("/", 1)[1])
    return found


class Relations:
    """Related patients of a profile, from ``store`` (searched without narrowing)."""

    def __init__(self, store: Any, spec: Any) -> None:
        self.store = store
        self.spec = spec
        self._cache: dict[tuple[Any, ...], frozenset[str]] = {}
        self._lock = threading.Lock()

    def searches(self, profile: Profile) -> list[tuple[str, list[tuple[str, str]]]]:
        """The (type, parameters) searches whose results' subjects are related patients."""
        found: list[tuple[str, list[tuple[str, str]]]] = []
        status = ("status", ",".join(CURRENT_ENCOUNTER))
        if profile.departments:
            orgs = _refs(profile.departments, "Organization")
            found.append(("Encounter", [("service-provider", orgs), status]))
            found.append(("Encounter", [("location:Location.organization", orgs), status]))
        if profile.practitioners:
            who = _refs(profile.practitioners, "Practitioner")
            found.append(("Encounter", [("participant", who)]))
            found.append(("CareTeam", [("participant", who)]))
        return found

    def related(self, profile: Profile) -> frozenset[str]:
        """The ids of the patients ``profile`` is related to."""
        searches = self.searches(profile)
        if not searches:
            return frozenset()
        key = (profile.departments, profile.practitioners, self.store.last_seq())
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        patients: set[str] = set()
        for rtype, params in searches:
            parsed = parse_search(self.spec, rtype, params, default_count=LIMIT,
                                  max_count=LIMIT)
            for version in self.store.search(parsed.query):
                patients |= _patients(version.resource())
        result = frozenset(patients)
        with self._lock:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = result
        return result
