"""FHIR Bulk Data Access: asynchronous ``$export`` to NDJSON and the fast NDJSON import path."""
