"""ADT^A40 patient merge: the merged record's clinical data moves to the surviving patient.

The A40 mapping (``hl7v2.mapping.adt``) links the two Patient records (the survivor
``replaces`` the merged one, which becomes ``active: false`` and ``replaced-by`` the survivor,
R4 §8.1.1.6 "Patient merging"). What hung off the merged record (encounters, results, orders,
appointments …) must follow, or a clinician opening the surviving chart misses it. After the
message's own Bundle is applied, and in the SAME database transaction (the gateway's savepoint
for the message), ``PatientMerge`` finds every resource in the merged patient's compartment
(R4 CompartmentDefinition patient, the search of ``GET Patient/[id]/*``), points each of its
references to the merged patient at the survivor instead, and writes it back through the
service path (a transaction Bundle of version-checked updates: validation, indexing, audit as
for any write).
If any of it fails the whole message is rolled back and refused (AE): never half moved.

Patient resources themselves are left alone (the survivor's ``replaces`` link must keep pointing
at the merged record). A reference the rewrite cannot recognise (not ``Patient/<id>`` relative
or absolute) is left as it was and the resource counted as not moved.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from medarchive.service.search_engine import Searchable, compartment_search, execute_search

PAGE = 100


class PatientMerge:
    """Moves clinical data of merged patients (``MappingResult.merges``: pairs of surviving and
    merged ``system|value`` identifiers). ``store`` is searched directly, as the transaction
    engine resolves conditional references: through the gateway's shared transaction, so it
    sees the message's own writes, and without a separate AuditEvent per search (the audited
    interaction is the write); ``submit`` writes through the service path."""

    def __init__(self, store: Searchable, spec: Any,
                 submit: Callable[..., dict[str, Any]]) -> None:
        self.store = store
        self.spec = spec
        self.submit = submit

    def __call__(self, merges: Sequence[tuple[str, str]]) -> tuple[str, ...]:
        """Move every pair; returns the ``Type/id/_history/n`` of each resource rewritten."""
        moved: list[str] = []
        for survivor_key, merged_key in merges:
            survivor, merged = self.patient(survivor_key), self.patient(merged_key)
            if survivor is None or merged is None or survivor == merged:
                continue
            moved += self.move(merged, survivor)
        return tuple(moved)

    def patient(self, key: str) -> str | None:
        """The id of the one Patient with identifier ``system|value``, else None."""
        system, _, value = key.partition("|")
        result = execute_search(
            self.store, self.spec, "Patient",
            [("identifier", f"{_escape(system)}|{_escape(value)}"), ("_count", "2"),
             ("_total", "none")], default_count=2, max_count=2, strict=True)
        return result.matches[0].id if len(result.matches) == 1 else None

    def move(self, merged: str, survivor: str) -> list[str]:
        """Re-point the compartment of Patient ``merged`` at Patient ``survivor``, a page at a
        time (moved resources leave the compartment; the others are stepped over)."""
        moved: list[str] = []
        kept = 0
        while True:
            result = compartment_search(
                self.store, self.spec, "Patient", merged, "*",
                [("_count", str(PAGE)), ("_offset", str(kept)), ("_total", "none")],
                default_count=PAGE, max_count=PAGE, strict=True)
            entries = []
            for version in result.matches:
                resource = version.resource()
                rewritten = None if version.resource_type == "Patient" else \
                    repoint(resource, merged, survivor)
                if rewritten is None:
                    kept += 1
                    continue
                entries.append({"resource": rewritten, "request": {
                    "method": "PUT", "url": f"{version.resource_type}/{version.id}",
                    "ifMatch": f'W/"{version.version_id}"'}})
            if entries:
                response = self.submit({"resourceType": "Bundle", "type": "transaction",
                                        "entry": entries})
                moved += [str(item["response"]["location"])
                          for item in response.get("entry", ())
                          if (item.get("response") or {}).get("location")]
            if result.next_offset is None:  # this page held the last of them
                return moved


def repoint(resource: dict[str, Any], merged: str, survivor: str) -> dict[str, Any] | None:
    """A copy of ``resource`` whose references to Patient ``merged`` (relative, versioned or
    absolute) name Patient ``survivor``; None when it has none."""
    pattern = re.compile(rf"^(?:.*/)?Patient/{re.escape(merged)}(?:/_history/[^/]+)?$")
    changed = False

    def walk(node: Any) -> Any:
        nonlocal changed
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key == "reference" and isinstance(value, str) and pattern.match(value):
                    out[key] = f"Patient/{survivor}"
                    changed = True
                else:
                    out[key] = walk(value)
            return out
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    copy = walk(resource)
    return copy if changed else None


def _escape(text: str) -> str:
    """A token search part with FHIR's escapes (R4 §3.1.1.5.7: ``\\``, ``|``, ``,``, ``$``)."""
    return re.sub(r"([\\|,$])", r"\\\1", text)
