"""Device readings: the wire schema, its validation, and the vital-signs Observation it becomes.

A reading is small JSON from a monitor or wearable: ``{"device": "MON-7", "kind": "heart_rate",
"value": 72, "unit": "/min", "time": "2024-05-01T12:00:00Z"}`` (blood pressure carries
``systolic`` and ``diastolic`` instead of ``value``). Validation is total: a reading is either
made into a complete Observation or refused with every problem listed, never stored half-made.
Codes follow the FHIR R4 vital-signs profile (R4 §observation-vitalsigns): LOINC code, UCUM unit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from medarchive.errors import Issue, Unprocessable
from medarchive.fhir.search.dates import date_range
from medarchive.fhir.vitalsigns import LOINC

DEVICE_SYSTEM = "urn:medarchive:device"
READING_SYSTEM = "urn:medarchive:device-reading"
UCUM = "http://unitsofmeasure.org"


@dataclass(frozen=True)
class Kind:
    """One kind of reading: LOINC code and display, UCUM unit, plausible range (inclusive)."""

    loinc: str
    display: str
    unit: str
    low: float
    high: float
    category: str = "vital-signs"


KINDS: dict[str, Kind] = {
    "heart_rate": Kind("8867-4", "Heart rate", "/min", 0, 350),
    "spo2": Kind("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", 0, 100),
    "respiratory_rate": Kind("9279-1", "Respiratory rate", "/min", 0, 150),
    "temperature": Kind("8310-5", "Body temperature", "Cel", 20, 46),
    "glucose": Kind("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 0, 2000,
                    "laboratory"),
    "steps": Kind("41950-7", "Number of steps in 24 hour Measured", "/(24.h)", 0, 200_000,
                  "activity"),
    "blood_pressure": Kind("85354-9", "Blood pressure panel with all children optional",
                           "mm[Hg]", 0, 350),
}
SYSTOLIC = ("8480-6", "Systolic blood pressure")
DIASTOLIC = ("8462-4", "Diastolic blood pressure")
# Input units accepted besides the canonical one, with the conversion to it.
CONVERSIONS: dict[tuple[str, str], Any] = {
    ("temperature", "[degF]"): lambda f: (f - 32) * 5 / 9,
    ("glucose", "mmol/L"): lambda m: m * 18.016,
    ("heart_rate", "{beats}/min"): lambda v: v,
    ("respiratory_rate", "{breaths}/min"): lambda v: v,
}


@dataclass(frozen=True)
class Reading:
    """A validated reading in canonical units (``values`` has one number, or two for BP)."""

    device: str
    kind: str
    values: tuple[float, ...]
    time: str

    @property
    def key(self) -> str:
        """Stable identity: a redelivered reading maps to the same Observation identifier."""
        return f"{self.device}/{self.kind}/{self.time}"


def _number(raw: Any, name: str, issues: list[Issue]) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        issues.append(Issue(code="value", diagnostics=f"{name} must be a finite number"))
        return None
    return float(raw)


def parse_reading(data: Any) -> Reading:
    """Validate one reading; raise ``Unprocessable`` listing every problem (R4 §3.1.0.4.3)."""
    if not isinstance(data, Mapping):
        raise Unprocessable("a reading must be a JSON object")
    issues: list[Issue] = []
    device = data.get("device")
    if not isinstance(device, str) or not device.strip() or len(device) > 64:
        issues.append(Issue(code="required", diagnostics="device: a device id is required"))
    kind_name = data.get("kind")
    kind = KINDS.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        issues.append(Issue(code="code-invalid", diagnostics=f"kind must be one of "
                                                              f"{', '.join(sorted(KINDS))}"))
    time = data.get("time")
    try:  # a FHIR dateTime (R4 §2.24.0.1) with a UTC offset
        if not isinstance(time, str) or datetime.fromisoformat(time).tzinfo is None:
            raise ValueError
        date_range(time)
    except ValueError:
        issues.append(Issue(code="value", diagnostics="time must be an ISO 8601 date-time "
                                                      "with a UTC offset"))
    values: list[float] = []
    if kind is not None:
        assert isinstance(kind_name, str)
        names = ("systolic", "diastolic") if kind_name == "blood_pressure" else ("value",)
        unit = data.get("unit", kind.unit)
        convert = (lambda v: v) if unit == kind.unit else CONVERSIONS.get((kind_name, unit))
        if convert is None:
            issues.append(Issue(code="value", diagnostics=f"unit {unit!r} is not accepted for "
                                                          f"{kind_name}; use {kind.unit}"))
        for name in names:
            number = _number(data.get(name), name, issues)
            if number is None or convert is None:
                continue
            value = round(float(convert(number)), 3)
            if not kind.low <= value <= kind.high:
                issues.append(Issue(code="value", diagnostics=f"{name} {value} {kind.unit} is "
                                    f"outside {kind.low}-{kind.high}"))
            values.append(value)
        if len(values) == 2 and values[0] <= values[1]:
            issues.append(Issue(code="value", diagnostics="systolic must exceed diastolic"))
    if issues:
        raise Unprocessable("invalid device reading", issues=issues)
    assert isinstance(device, str) and isinstance(kind_name, str) and isinstance(time, str)
    return Reading(device.strip(), kind_name, tuple(values), time)


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def to_observation(reading: Reading, patient: str, device: str) -> dict[str, Any]:
    """The vital-signs Observation (R4 §observation-vitalsigns) for ``reading``; ``patient``
    and ``device`` are references (``Patient/1``, ``Device/9``)."""
    kind = KINDS[reading.kind]
    category = {"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
        "code": kind.category}]}
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [{"system": READING_SYSTEM, "value": reading.key}],
        "status": "final",
        "category": [category],
        "code": {"coding": [{"system": LOINC, "code": kind.loinc, "display": kind.display}]},
        "subject": {"reference": patient},
        "device": {"reference": device},
        "effectiveDateTime": reading.time,
    }
    if reading.kind == "blood_pressure":
        observation["component"] = [
            {"code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
             "valueQuantity": _quantity(value, kind.unit)}
            for (code, display), value in zip((SYSTOLIC, DIASTOLIC), reading.values,
                                              strict=True)]
    else:
        observation["valueQuantity"] = _quantity(reading.values[0], kind.unit)
    return observation
