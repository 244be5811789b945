"""HTTP transports: the FHIR REST API (and later DICOMweb, UI, OAuth) as ASGI routes."""
