"""FHIRPath for FHIR R4: one engine for search indexing, validation and SQL-on-FHIR views.

Implements FHIRPath N1 (http://hl7.org/fhirpath/N1) with the FHIR additions of R4 §2.24,
evaluated directly over FHIR JSON dicts::

    from medarchive.fhirpath import evaluate, compile
    evaluate(patient, "Patient.name.given")            # ['Peter', 'James', ...]
    expr = compile("Observation.value.as(Quantity)")   # parse once, cached by text
    expr.evaluate(observation)                          # [{'value': 185, 'unit': 'lbs', ...}]

Results are plain values: elements as their JSON (``dict``, ``str``, ``bool``, ``int``,
``Decimal``), computed values as ``str``/``bool``/``int``/``Decimal`` or the frozen value
classes ``Quantity``, ``Date``, ``DateTime``, ``Time``; ``to_json`` turns any result item
into JSON. See docs/fhirpath.md.
"""

from medarchive.fhirpath.errors import FhirPathError
from medarchive.fhirpath.evaluate import Expression, compile, evaluate
from medarchive.fhirpath.model import TypeModel, default_model
from medarchive.fhirpath.parse import parse
from medarchive.fhirpath.values import Date, DateTime, Quantity, Time, to_json

__all__ = [
    "Date",
    "DateTime",
    "Expression",
    "FhirPathError",
    "Quantity",
    "Time",
    "TypeModel",
    "compile",
    "default_model",
    "evaluate",
    "parse",
    "to_json",
]
