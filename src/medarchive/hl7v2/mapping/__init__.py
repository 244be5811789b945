"""HL7 v2 → FHIR R4 transaction Bundles: one entry point, one mapper per message type.

``map_message`` checks that the message is one MedArchive maps (type, trigger, version,
processing id; an AR with a table 0357 code otherwise), runs the mapper for its type, and
returns the Bundle with every field it did not map listed by location, so nothing is lost
silently. Mappers raise ``Hl7Error`` (AE) for content they cannot store as sent.
"""

from __future__ import annotations

from collections.abc import Callable

from medarchive.hl7v2.errors import Hl7Error, Location
from medarchive.hl7v2.mapping.adt import TRIGGERS as ADT_TRIGGERS
from medarchive.hl7v2.mapping.adt import map_adt
from medarchive.hl7v2.mapping.common import ts
from medarchive.hl7v2.mapping.conceptmaps import concept_map_table
from medarchive.hl7v2.mapping.context import Context, MappingConfig, MappingResult
from medarchive.hl7v2.mapping.mdm import map_mdm
from medarchive.hl7v2.mapping.orm import map_orders
from medarchive.hl7v2.mapping.oru import map_oru
from medarchive.hl7v2.mapping.rde import map_rde
from medarchive.hl7v2.mapping.siu import map_siu
from medarchive.hl7v2.mapping.vxu import map_vxu
from medarchive.hl7v2.message import Message, version_tuple

__all__ = ["SUPPORTED", "MappingConfig", "MappingResult", "check_message", "concept_map_table",
           "map_message"]

# message type → (triggers, mapper)
SUPPORTED: dict[str, tuple[frozenset[str], Callable[[Context], None]]] = {
    "ADT": (ADT_TRIGGERS, map_adt),
    "ORU": (frozenset({"R01"}), map_oru),
    "ORM": (frozenset({"O01"}), map_orders),
    "OML": (frozenset({"O21"}), map_orders),
    "SIU": (frozenset({"S12", "S13", "S14", "S15"}), map_siu),
    "VXU": (frozenset({"V04"}), map_vxu),
    "MDM": (frozenset({"T02"}), map_mdm),
    "RDE": (frozenset({"O11"}), map_rde),
}
_ENVELOPE = (3, 4, 5, 6, 7, 9, 10, 11, 12, 15, 16, 18)


def check_message(message: Message) -> None:
    """Raise the AR an unmappable message calls for (HL7 table 0357): 200 unsupported message
    type, 201 unsupported event (trigger) of a supported type, 202 processing id other than
    P/T/D (table 0103), 203 version outside 2.3-2.8.x."""
    kind, trigger = message.message_type, message.trigger
    if kind not in SUPPORTED:
        shown = f"{kind}^{trigger}" if trigger else kind or "(empty)"
        raise Hl7Error(f"unsupported message type {shown}; MedArchive maps "
                       f"{', '.join(sorted(SUPPORTED))}", hl7_code=200, ack_code="AR",
                       location=Location("MSH", 1, 9, 1, 1))
    if trigger not in SUPPORTED[kind][0]:
        raise Hl7Error(f"unsupported event {kind}^{trigger or '(empty)'}; supported: "
                       f"{', '.join(sorted(SUPPORTED[kind][0]))}", hl7_code=201,
                       ack_code="AR", location=Location("MSH", 1, 9, 1, 2))
    version = version_tuple(message.version)
    if version is None or not (2, 3) <= version[:2] <= (2, 8):
        raise Hl7Error(f"unsupported HL7 version {message.version or '(empty)'}; "
                       "supported: 2.3 to 2.8", hl7_code=203, ack_code="AR",
                       location=Location("MSH", 1, 12))
    if message.processing_id[:1] not in ("P", "T", "D"):
        raise Hl7Error(f"unsupported processing id {message.processing_id or '(empty)'} "
                       "(table 0103: P, T, D)", hl7_code=202, ack_code="AR",
                       location=Location("MSH", 1, 11))


def map_message(message: Message, config: MappingConfig) -> MappingResult:
    """Map one supported message to a FHIR R4 transaction Bundle (R4 §2.36.4.1 transaction).

    Patients, encounters, orders and results are matched by identifier with conditional
    create/update, so mapping and applying the same message twice changes nothing. Raises
    ``Hl7Error`` (AR for unsupported messages, AE for content that cannot be stored).
    """
    check_message(message)
    ctx = Context(message, config)
    msh = message.msh
    for field_no in _ENVELOPE:
        ctx.mark(msh, field_no)
    try:
        SUPPORTED[message.message_type][1](ctx)
    except Hl7Error:
        raise
    except Exception as exc:  # a mapper bug must still end in a controlled AE
        raise Hl7Error(f"internal error while mapping: {type(exc).__name__}: {exc}",
                       hl7_code=207, ack_code="AE") from exc
    bundle = ctx.bundle()
    stamp = ts(ctx, ctx.node(msh, 7), "instant")
    if stamp:
        bundle = {"resourceType": "Bundle", "type": "transaction", "timestamp": stamp,
                  "entry": bundle["entry"]}
    return MappingResult(bundle=bundle, unmapped=ctx.unmapped(),
                         patient_identifiers=tuple(ctx.patient_identifiers),
                         merge=ctx.merges[0] if ctx.merges else None,
                         merges=tuple(ctx.merges))
