"""MedArchive: a hospital medical-records platform built on HL7 FHIR R4."""

__version__ = "0.1.0"
