"""The transport-neutral FHIR interaction path: FhirRequest -> repository -> FhirResponse."""
