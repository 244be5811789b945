"""FHIR R4 search (the Search page, §3.1.1): parameters, query model, index, matching."""
