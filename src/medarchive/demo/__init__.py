"""Synthetic hospital data: realistic, clinically coherent FHIR R4 patients for demos,
benchmarks and tests (``medarchive demo --patients N``).

``reference_bundle(seed)`` creates the shared hospital (organization, departments, wards,
clinicians); ``generate(patients, seed, start)`` yields one transaction Bundle per patient;
``generate_ndjson`` yields the same resources flat with final ids. See docs/demo-data.md.
"""

from medarchive.demo.generate import generate, generate_ndjson
from medarchive.demo.hospital import reference_bundle

__all__ = ["generate", "generate_ndjson", "reference_bundle"]
