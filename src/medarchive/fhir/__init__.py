"""FHIR R4 domain code: the specification as data, validation, search, bundles. Pure, no I/O."""
