"""HL7 v2 for MedArchive: reading ER7 messages, acknowledging them, mapping them to FHIR R4.

Pure domain code, no sockets and no I/O: the MLLP gateway frames bytes and calls
``parse_message``, ``map_message`` and ``build_ack`` / ``build_nak_for_unparseable``; the
service applies the resulting transaction Bundle. See docs/ingestion.md for the mapping tables.
"""

from medarchive.hl7v2.ack import ack_wanted, build_ack, build_nak_for_unparseable
from medarchive.hl7v2.errors import Hl7Error, Hl7ParseError, Location
from medarchive.hl7v2.escapes import Separators, escape, unescape
from medarchive.hl7v2.mapping import (
    SUPPORTED,
    MappingConfig,
    MappingResult,
    check_message,
    concept_map_table,
    map_message,
)
from medarchive.hl7v2.message import (
    Message,
    Segment,
    decode_message,
    encode_message,
    parse_message,
    split_messages,
)

__all__ = [
    "SUPPORTED", "Hl7Error", "Hl7ParseError", "Location", "MappingConfig", "MappingResult",
    "Message", "Segment", "Separators", "ack_wanted", "build_ack", "build_nak_for_unparseable",
    "check_message", "concept_map_table", "decode_message", "encode_message", "escape",
    "map_message", "parse_message", "split_messages", "unescape",
]
