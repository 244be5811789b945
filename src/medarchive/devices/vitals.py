"""Observations and their search-index rows made straight from landed readings, without the
generic machinery.

The materializer makes thousands of Observations a second that differ only in a handful of
fields: identifier (the reading key), subject, device, effective time and the value(s). Going
through the repository (stamping, full R4 validation) and the generic indexer (FHIRPath over
every Observation search parameter) cost about 2 ms of CPU each; here each kind has a template:

- the Observation is ``readings.to_observation`` stamped like ``Repository.stamp`` does (id,
  ``meta.versionId`` 1, ``meta.lastUpdated``). It is not run through the R4 validator: it is
  built by our code from a reading that is itself validated strictly again here
  (``check_row``: the landing's checks, plus the references); the tests run the produced
  Observations through the full validator.
- the index rows: those of the parameters that do not depend on the reading (``code``,
  ``category``, ``status``, ``combo-code``, ``component-code``, their ``:text`` rows,
  ``_content``...) are extracted once per kind by the generic indexer from a sample
  Observation; those of the parameters that do (``VARIABLE``) are made directly with the
  generic extractor's own leaf functions (``date_range``, ``quantity_rows``, memoized per unit
  and value). ``tests/devices/test_devices_vitals.py`` checks, for every Observation search
  parameter and every kind, that the rows equal what the generic indexer gives.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from medarchive.devices.raw import Row
from medarchive.devices.readings import (
    DIASTOLIC,
    KINDS,
    LOINC,
    READING_SYSTEM,
    SYSTOLIC,
    UCUM,
    Reading,
    parse_reading,
    to_observation,
)
from medarchive.errors import Issue, Unprocessable
from medarchive.fhir.bundle import instant
from medarchive.fhir.search.dates import date_range
from medarchive.fhir.search.entries import (
    CompositeEntry,
    DateEntry,
    IndexEntries,
    QuantityEntry,
    ReferenceEntry,
    TokenEntry,
)
from medarchive.fhir.search.extract import quantity_rows
from medarchive.service.repository import ID_PATTERN
from medarchive.store.base import Change

# Observation search parameters whose rows depend on the reading; every other parameter's rows
# are the same for all readings of one kind.
VALUE_PARAMS = ("value-quantity", "combo-value-quantity", "component-value-quantity")
CODE_VALUE_PARAMS = ("code-value-quantity", "combo-code-value-quantity",
                     "component-code-value-quantity")
VARIABLE = frozenset({"identifier", "subject", "patient", "device", "date", *VALUE_PARAMS,
                      *CODE_VALUE_PARAMS})


def check_row(row: Row) -> Reading:
    """The reading of a landed row, validated as strictly as at the landing (kind, unit, range,
    time), with its key and references; raises ``Unprocessable`` listing every problem."""
    names = ("systolic", "diastolic") if row.kind == "blood_pressure" else ("value",)
    item: dict[str, Any] = {"device": row.device, "kind": row.kind, "time": row.effective}
    if row.kind in KINDS:
        item["unit"] = KINDS[row.kind].unit
    if len(row.values) == len(names):
        item.update(zip(names, row.values, strict=True))
    issues: list[Issue] = []
    try:
        reading = parse_reading(item)
    except Unprocessable as exc:
        issues += exc.issues
        reading = None
    if len(row.values) != len(names):
        issues.append(Issue(code="value", diagnostics=f"{row.kind} needs {len(names)} value(s)"))
    if reading is not None and reading.key != row.key:
        issues.append(Issue(code="value", diagnostics=f"key {row.key!r} does not match the "
                                                      "reading"))
    for reference, rtype in ((row.patient, "Patient"), (row.device_ref, "Device")):
        kind, _, id = reference.partition("/")
        if kind != rtype or not ID_PATTERN.match(id):
            issues.append(Issue(code="value", diagnostics=f"{reference!r} is not a {rtype} "
                                                          "reference"))
    if issues or reading is None:
        raise Unprocessable("invalid landed device reading", issues=issues)
    return reading


@functools.lru_cache(maxsize=65_536)
def _quantity(unit: str, value: float) -> QuantityEntry:
    """The quantity row (param left empty) of ``value`` in UCUM ``unit``, as the generic
    extractor makes it (precision from the written number, canonical UCUM range)."""
    return quantity_rows("", {"value": value, "unit": unit, "system": UCUM, "code": unit})[0]


def _named(param: str, q: QuantityEntry) -> QuantityEntry:
    return QuantityEntry(param, q.system, q.code, q.value, q.low, q.high, q.unit,
                         q.canonical_code, q.canonical_low, q.canonical_high)


def _composites(param: str, code: str, q: QuantityEntry) -> list[CompositeEntry]:
    rows = [CompositeEntry(param, LOINC, code, None, None, q.system, q.code, q.low, q.high)]
    if q.canonical_code is not None:
        rows.append(CompositeEntry(param, LOINC, code, None, None, UCUM, q.canonical_code,
                                   q.canonical_low, q.canonical_high, canonical=True))
    return rows


@dataclass(frozen=True)
class _Template:
    """The constant index rows of one kind, and the codes of its valued elements."""

    fixed: IndexEntries
    value_codes: tuple[str, ...]  # LOINC of the value (one kind) or of each component (BP)
    params: frozenset[str]


class VitalSigns:
    """Builds the stored Observation and its index entries of a landed reading (module doc).

    ``indexer`` is the generic one: run once per kind on a sample, for the constant rows."""

    def __init__(self, indexer: Callable[[dict[str, Any]], IndexEntries]) -> None:
        self._templates: dict[str, _Template] = {}
        self._when: datetime | None = None
        self._instant = ""
        for name, kind in KINDS.items():
            values = (120.0, 80.0) if name == "blood_pressure" else (kind.low,)
            sample = to_observation(Reading("sample", name, values, "2024-01-01T00:00:00Z"),
                                    "Patient/sample", "Device/sample")
            found = indexer({"resourceType": "Observation", "id": "sample", **sample})

            def fixed(rows: tuple[Any, ...]) -> tuple[Any, ...]:
                return tuple(row for row in rows if row.param not in VARIABLE)
            constant = IndexEntries(
                tokens=fixed(found.tokens), strings=fixed(found.strings),
                references=fixed(found.references), dates=fixed(found.dates),
                numbers=fixed(found.numbers), quantities=fixed(found.quantities),
                uris=fixed(found.uris), composites=fixed(found.composites),
                params=frozenset(found.params - VARIABLE))
            codes = (SYSTOLIC[0], DIASTOLIC[0]) if name == "blood_pressure" else (kind.loinc,)
            single = ("value-quantity", "combo-value-quantity", "code-value-quantity",
                      "combo-code-value-quantity")
            several = ("combo-value-quantity", "component-value-quantity",
                       "combo-code-value-quantity", "component-code-value-quantity")
            params = constant.params | {"identifier", "subject", "patient", "device", "date"} \
                | set(several if name == "blood_pressure" else single)
            self._templates[name] = _Template(constant, codes, frozenset(params))

    @functools.lru_cache(maxsize=65_536)  # noqa: B019 (one VitalSigns per materializer)
    def _valued(self, kind: str, values: tuple[float, ...]
                ) -> tuple[tuple[QuantityEntry, ...], tuple[CompositeEntry, ...]]:
        """The quantity and composite rows of ``values`` (vital signs repeat their values)."""
        template = self._templates[kind]
        unit = KINDS[kind].unit
        if kind == "blood_pressure":
            value_params, code_params = VALUE_PARAMS[1:], CODE_VALUE_PARAMS[1:]
        else:
            value_params, code_params = VALUE_PARAMS[:2], CODE_VALUE_PARAMS[:2]
        quantities = [_named(param, _quantity(unit, value))
                      for param in value_params for value in values]
        composites = list(template.fixed.composites)
        for param in code_params:
            for code, value in zip(template.value_codes, values, strict=True):
                composites += _composites(param, code, _quantity(unit, value))
        return (*template.fixed.quantities, *quantities), tuple(composites)

    def entries(self, reading: Reading, patient: str, device: str) -> IndexEntries:
        """The index entries of the Observation of ``reading`` (references ``Patient/x``,
        ``Device/y``), equal to the generic indexer's."""
        template = self._templates[reading.kind]
        fixed = template.fixed
        patient_id = patient.partition("/")[2]
        quantities, composites = self._valued(reading.kind, reading.values)
        return IndexEntries(
            tokens=(*fixed.tokens, TokenEntry("identifier", READING_SYSTEM, reading.key)),
            strings=fixed.strings,
            references=(*fixed.references,
                        ReferenceEntry("device", "Device", device.partition("/")[2]),
                        ReferenceEntry("patient", "Patient", patient_id),
                        ReferenceEntry("subject", "Patient", patient_id)),
            dates=(*fixed.dates, DateEntry("date", *date_range(reading.time))),
            numbers=fixed.numbers, quantities=quantities, uris=fixed.uris,
            params=template.params, composites=composites)

    def change(self, row: Row, id: str, when: datetime) -> tuple[Change, IndexEntries]:
        """The Change creating ``Observation/{id}`` (version 1 at ``when``) of the landed
        ``row``, and its index entries; ``Unprocessable`` when the row is not a valid reading."""
        reading = check_row(row)
        if when != self._when:
            self._when, self._instant = when, instant(when)
        stored: dict[str, Any] = {"resourceType": "Observation", "id": id,
                                  "meta": {"versionId": "1", "lastUpdated": self._instant}}
        stored.update(to_observation(reading, row.patient, row.device_ref))  # keeps the order
        change = Change("Observation", id, 1, 0, when, False, orjson.dumps(stored), stored)
        return change, self.entries(reading, row.patient, row.device_ref)
