"""The state of one message being mapped: what was read, and the Bundle being built.

"No silent loss" is enforced here rather than by discipline in each mapper: every value a
mapper reads through a ``Node`` is recorded, and ``unmapped()`` lists every non-blank leaf of
the message that was never read. The Bundle builder gives each resource a deterministic
``urn:uuid`` fullUrl (derived from the message, so a replay builds the same Bundle) and keeps
conditional requests (create-if-none-exist, update-by-identifier) in one shape.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from medarchive.hl7v2.errors import Hl7Error, Location
from medarchive.hl7v2.message import Message, Segment

_NAMESPACE = uuid.UUID("6f1d2d8e-5d0b-4a43-9a57-6d8f3c6c1e21")


@dataclass(frozen=True)
class MappingConfig:
    """Site rules for turning HL7 v2 into FHIR.

    ``identifier_systems``: assigning authority (HD namespace id or universal id) → FHIR
    Identifier.system; unlisted authorities follow the default rule of ``common.system_for``.
    ``concept_maps``: (source coding system as written in the message, code) → (system, code,
    display), added as an extra coding. ``default_timezone``: zone (or IANA name) for
    timestamps without an offset. ``facility_is_default_authority``: identifiers without an
    assigning authority are taken to be assigned by the sending facility (MSH-4).
    """

    identifier_systems: Mapping[str, str] = field(default_factory=dict)
    concept_maps: Mapping[tuple[str, str], tuple[str, str, str]] = field(default_factory=dict)
    default_timezone: tzinfo | str = UTC
    facility_is_default_authority: bool = True

    def zone(self) -> tzinfo:
        if isinstance(self.default_timezone, str):
            return ZoneInfo(self.default_timezone)
        return self.default_timezone


@dataclass(frozen=True)
class MappingResult:
    """A FHIR transaction Bundle and what the service needs to apply it safely.

    ``unmapped``: every non-blank field not carried into the Bundle (``PID-11.3`` style);
    ``patient_identifiers``: ``system|value`` of the patient(s), the match key first (for
    per-patient ordering); ``merge``: (surviving, merged) patient identifiers of an A40.
    """

    bundle: dict[str, Any]
    unmapped: tuple[str, ...]
    patient_identifiers: tuple[str, ...]
    merge: tuple[str, str] | None = None
    merges: tuple[tuple[str, str], ...] = ()
    """Every (surviving, merged) pair of an A40; ``merge`` is the first (most carry one)."""


class Node:
    """A composite value at one field repetition (parts are components) or one component
    (``comp`` > 0, parts are subcomponents). Reading a part marks it as mapped.

    A plain slotted class rather than a frozen dataclass: mappers create tens of thousands per
    second and the frozen ``__init__`` was a tenth of the mapping time.
    """

    __slots__ = ("comp", "ctx", "field", "rep", "seg")

    def __init__(self, ctx: Context, seg: Segment, field: int, rep: int = 1,
                 comp: int = 0) -> None:
        self.ctx = ctx
        self.seg = seg
        self.field = field
        self.rep = rep
        self.comp = comp

    def __getitem__(self, part: int) -> str:
        """``peek(part)`` and ``mark(part)`` in one call (the mappers' commonest read)."""
        seg, comp = self.seg, self.comp
        if comp:
            self.ctx.used.add((seg.position, self.field, self.rep, comp, part))
            return seg.value(self.field, self.rep, comp, part).strip()
        if not part:
            self.ctx.used.add((seg.position, self.field, self.rep, 0, 0))
            return ""
        self.ctx.used.add((seg.position, self.field, self.rep, part, 1))
        return seg.value(self.field, self.rep, part, 1).strip()

    def peek(self, part: int) -> str:
        """The unescaped, stripped value of ``part`` without marking it as mapped."""
        if self.comp:
            return self.seg.value(self.field, self.rep, self.comp, part).strip()
        return self.seg.value(self.field, self.rep, part, 1).strip()

    def mark(self, part: int = 0) -> None:
        """Mark ``part`` (0: the whole node) as mapped."""
        if self.comp:
            self.ctx.mark(self.seg, self.field, self.rep, self.comp, part)
        elif part:
            self.ctx.mark(self.seg, self.field, self.rep, part, 1)
        else:
            self.ctx.mark(self.seg, self.field, self.rep)

    def part(self, part: int) -> Node:
        """Component ``part`` as a node whose parts are its subcomponents."""
        if self.comp:
            return self  # a subcomponent has no parts: treat it as a one-part node
        return Node(self.ctx, self.seg, self.field, self.rep, part)

    @property
    def empty(self) -> bool:
        if self.comp:
            return not any(s.strip() for s in _component(self.seg, self.field, self.rep,
                                                         self.comp))
        reps = self.seg.fields[self.field] if self.field < len(self.seg.fields) else ()
        rep = reps[self.rep - 1] if self.rep <= len(reps) else ()
        return not any(s.strip() for comp in rep for s in comp)

    def location(self, part: int = 0) -> Location:
        comp, sub = (self.comp, part) if self.comp else (part, 0)
        return Location(self.seg.name, self.seg.sequence, self.field, self.rep, comp, sub)


def _component(seg: Segment, field_no: int, rep: int, comp: int) -> tuple[str, ...]:
    try:
        return seg.fields[field_no][rep - 1][comp - 1]
    except IndexError:
        return ()


class Context:
    """One mapping run: the message, the config, the reads, and the Bundle entries."""

    def __init__(self, message: Message, config: MappingConfig) -> None:
        self.message = message
        self.config = config
        self.zone = config.zone()
        self.used: set[tuple[int, int, int, int, int]] = set()
        self.entries: list[dict[str, Any]] = []
        self._by_key: dict[str, str] = {}
        self._seed = f"{message.sending_app}|{message.sending_facility}|{message.control_id}|"
        self.patient: str | None = None
        self.patient_identifiers: list[str] = []
        self.encounter: str | None = None
        self.merges: list[tuple[str, str]] = []

    # --- reading -------------------------------------------------------------------------

    def node(self, seg: Segment, field_no: int, rep: int = 1) -> Node:
        return Node(self, seg, field_no, rep)

    def reps(self, seg: Segment, field_no: int) -> Iterator[Node]:
        """The non-empty repetitions of a field, as nodes."""
        for rep in range(1, seg.repetitions(field_no) + 1):
            node = Node(self, seg, field_no, rep)
            if not node.empty:
                yield node

    def following(self, seg: Segment, names: frozenset[str] = frozenset({"NTE"})) -> (
            list[Segment]):
        """The segments directly after ``seg`` whose ids are in ``names`` (e.g. its NTEs)."""
        out = []
        for other in self.message.segment_list[seg.position:]:
            if other.name not in names:
                break
            out.append(other)
        return out

    def take(self, seg: Segment, field_no: int, comp: int = 1) -> str:
        """Component ``comp`` of the first repetition of a field, marked as mapped."""
        return Node(self, seg, field_no)[comp]

    def mark(self, seg: Segment, field_no: int = 0, rep: int = 0, comp: int = 0,
             sub: int = 0) -> None:
        self.used.add((seg.position, field_no, rep, comp, sub))

    def mark_segment(self, seg: Segment) -> None:
        self.used.add((seg.position, 0, 0, 0, 0))

    def unmapped(self) -> tuple[str, ...]:
        """Every non-blank leaf that no mapper read, as ``PID-11.3``-style locations."""
        used = self.used
        out: list[str] = []
        for seg in self.message.segment_list:
            pos = seg.position
            if (pos, 0, 0, 0, 0) in used:
                continue
            for f, r, c, s, _value, has_comps, has_subs in seg.leaves():
                if ((pos, f, 0, 0, 0) in used or (pos, f, r, 0, 0) in used
                        or (pos, f, r, c, 0) in used or (pos, f, r, c, s) in used):
                    continue
                out.append(str(Location(seg.name, seg.sequence, f, r,
                                        c if has_comps or has_subs else 0,
                                        s if has_subs else 0)))
        return tuple(out)

    # --- failing -------------------------------------------------------------------------

    def fail(self, text: str, location: Location | None, hl7_code: int = 101) -> Hl7Error:
        """An AE for content that cannot be stored as sent (the caller raises it)."""
        return Hl7Error(text, hl7_code=hl7_code, ack_code="AE", location=location)

    def required_segment(self, name: str) -> Segment:
        seg = self.message.segment(name)
        if seg is None:
            raise self.fail(f"required segment {name} is missing", Location(name), 100)
        return seg

    # --- building ------------------------------------------------------------------------

    def full_url(self, key: str) -> str:
        return f"urn:uuid:{uuid.uuid5(_NAMESPACE, self._seed + key)}"

    def known(self, key: str) -> str | None:
        """The fullUrl of the entry added under ``key``, if any (for de-duplication)."""
        return self._by_key.get(key)

    def add(self, resource: dict[str, Any], *, key: str, method: str = "POST",
            condition: str | None = None) -> str:
        """Add an entry. ``condition`` is a search (``identifier=sys|val``): with POST it is
        ifNoneExist (conditional create), with PUT it makes a conditional update."""
        if key in self._by_key:
            return self._by_key[key]
        full_url = self.full_url(key)
        kind = resource["resourceType"]
        request: dict[str, str] = {"method": method, "url": kind}
        if condition and method == "PUT":
            request["url"] = f"{kind}?{condition}"
        elif condition:
            request["ifNoneExist"] = condition
        self.entries.append({"fullUrl": full_url, "resource": resource, "request": request})
        self._by_key[key] = full_url
        return full_url

    def bundle(self) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "transaction", "entry": self.entries}
