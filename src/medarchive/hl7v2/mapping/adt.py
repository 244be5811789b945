"""ADT (admit, discharge, transfer) events → Patient and Encounter updates, and A40 merges.

ADT is the authoritative source of demographics and visits, so its Patient and Encounter are
conditional updates (the V2-to-FHIR "ADT_A01 to Bundle" family of maps). The trigger event
sets the Encounter status; A28/A31 (person information) touch only the Patient; A40 merges two
patient records the FHIR way (R4 Patient.link "replaces"/"replaced-by") and reports the pair in
``MappingResult.merges`` so the service can move what hangs off the merged record.
"""

from __future__ import annotations

from typing import Any

from medarchive.hl7v2.errors import Location
from medarchive.hl7v2.mapping.common import (
    condition,
    facility_system,
    human_name,
    identifier,
    token,
)
from medarchive.hl7v2.mapping.context import Context
from medarchive.hl7v2.mapping.encounter import map_encounter, message_identifier
from medarchive.hl7v2.mapping.observation import map_observation
from medarchive.hl7v2.mapping.patient import map_patient
from medarchive.hl7v2.message import Segment

# Trigger → Encounter.status (None: derived from PV1-44/45); triggers absent here have no visit.
ENCOUNTER_STATUS: dict[str, str | None] = {
    "A01": "in-progress", "A02": "in-progress", "A03": "finished", "A04": "in-progress",
    "A05": "planned", "A08": None, "A11": "cancelled", "A13": "in-progress",
}
TRIGGERS = frozenset({*ENCOUNTER_STATUS, "A28", "A31", "A40"})


def map_adt(ctx: Context) -> None:
    """ADT A01-A05, A08, A11, A13 (Patient + Encounter), A28/A31 (Patient), A40 (merge)."""
    trigger = ctx.message.trigger
    evn = ctx.message.segment("EVN")
    if evn is not None:
        ctx.mark(evn, 1)  # EVN-1 repeats MSH-9.2
    pid = ctx.required_segment("PID")
    if trigger == "A40":
        _merge(ctx)
        return
    map_patient(ctx, pid, update=True)
    if trigger in ENCOUNTER_STATUS:
        pv1 = ctx.required_segment("PV1")
        map_encounter(ctx, pv1, update=True, status=ENCOUNTER_STATUS[trigger])
    _observations(ctx)


def _observations(ctx: Context) -> None:
    """ADT OBX segments (height, weight, ...) → Observations, created once per message."""
    base = message_identifier(ctx, "OBX")
    used: set[str] = set()
    for obx in ctx.message.segments("OBX"):
        map_observation(ctx, obx, ctx.following(obx), base=base, used_keys=used, update=False)


def _merge(ctx: Context) -> None:
    """A40: each PID is a surviving patient, the MRG after it the merged one (HL7 v2.8
    §3.3.40, ADT_A39 structure: the PATIENT group repeats).

    The surviving Patient is updated and links to the merged one ("replaces"); the merged
    Patient is updated to inactive, named from MRG-7, linking to the survivor ("replaced-by").
    """
    pairs: list[tuple[Segment, Segment]] = []
    pending: Segment | None = None
    for seg in ctx.message.segment_list:
        if seg.name == "PID":
            pending = seg
        elif seg.name == "MRG":
            if pending is None:
                raise ctx.fail("MRG without a PID before it", Location("MRG", seg.sequence),
                               100)
            pairs.append((pending, seg))
            pending = None
    if not pairs or pending is not None:
        raise ctx.fail("ADT^A40 needs an MRG segment after each PID",
                       Location("MRG", len(pairs) + 1), 100)
    keys: list[str] = []
    merges: list[tuple[str, str]] = []
    for pid, mrg in pairs:
        survivor_url = map_patient(ctx, pid, update=True)
        survivor = ctx.entries[-1]["resource"]
        keys += [k for k in ctx.patient_identifiers if k not in keys]
        merged_url, merged_key = _retire(ctx, mrg, survivor_url)
        survivor["link"] = [{"other": {"reference": merged_url}, "type": "replaces"}]
        merges.append((ctx.patient_identifiers[0], merged_key))
        keys.append(merged_key)
        ctx.patient = survivor_url
    ctx.patient_identifiers = keys
    ctx.merges = merges


def _retire(ctx: Context, mrg: Segment, survivor_url: str) -> tuple[str, str]:
    fallback = facility_system(ctx)
    merged_ids = [i for i in (identifier(ctx, node, fallback=fallback)
                              for node in ctx.reps(mrg, 1)) if i]
    match = next((i for i in merged_ids if "system" in i), None)
    if match is None:
        raise ctx.fail("MRG-1 holds no prior patient identifier with an assigning authority",
                       Location("MRG", mrg.sequence, 1, 1, 4))
    merged: dict[str, Any] = {"resourceType": "Patient", "identifier": merged_ids,
                              "active": False}
    names = [n for n in (human_name(ctx, node) for node in ctx.reps(mrg, 7)) if n]
    if names:
        merged["name"] = names
    merged["link"] = [{"other": {"reference": survivor_url}, "type": "replaced-by"}]
    merged_url = ctx.add(merged, key=f"Patient|{token(match)}", method="PUT",
                         condition=condition(match))
    return merged_url, token(match)
