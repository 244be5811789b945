"""MLLP transport for HL7 v2: frame codec, message log, gateway, group commit, asyncio server.

The transport layer of the HL7 v2 gateway (docs/ingestion.md, "MLLP gateway"): bytes in,
acknowledgements out; parsing and mapping live in ``medarchive.hl7v2``, writes go through
``Services.submit`` like every other way in, committed with their log row in one transaction.
"""
