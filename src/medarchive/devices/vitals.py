"""Observations and their search-index rows made straight from landed readings, without the
generic machinery.

The materializer makes thousands of Observations a second that differ only in a handful of
fields: identifier (the reading key), subject, device, effective time and the value(s). Going
through the repository (stamping, full R4 validation) and the generic indexer (FHIRPath over
every Observation search parameter) cost about 2 ms of CPU each; here each kind has a template:

- the Observation is ``readings.to_observation`` stamped like ``Repository.stamp`` does (id,
  ``meta.versionId`` 1, ``meta.lastUpdated``). It is not run through the R4 validator: it is
  built by our code from a reading that is itself validated strictly again here
  (``check_row``: the landing's checks, plus the references); the tests run the Observations
  of random readings of every kind through the full validator.
- the index rows, as the SQL store writes them (``store.sql.indexing.index_rows``, blinded
  when encrypting): those of the parameters that do not depend on the reading (``code``,
  ``category``, ``status``, ``component-code``, their ``:text`` rows,
  ``_content``..., and the ``idx_param`` rows: none for these kinds) are extracted once per
  kind by the generic indexer from a sample Observation and kept as rows; those of the
  parameters that do (``VARIABLE``) are made directly with the generic extractor's own leaf
  functions (``date_range``, ``quantity_rows``; the quantities and composites memoized per
  value).
  ``tests/devices/test_devices_vitals.py`` checks for random readings of every kind that the
  rows (and the data-key owner) equal what the generic indexer and the store give.

Everything here runs before the materializer's transaction, so the transaction holds the
database only for its statements.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from medarchive.crypto.blind import BlindIndex, blinded
from medarchive.devices.raw import Row
from medarchive.devices.readings import (
    DIASTOLIC,
    KINDS,
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
    IndexEntries,
    QuantityEntry,
)
from medarchive.fhir.search.extract import quantity_rows
from medarchive.fhir.vitalsigns import LOINC
from medarchive.service.repository import ID_PATTERN
from medarchive.store.base import Change
from medarchive.store.sql.datesort import span_class
from medarchive.store.sql.indexing import IndexRows, index_rows

# Observation search parameters whose rows depend on the reading; every other parameter's rows
# are the same for all readings of one kind.
# (the ``combo-*`` unions of these have no rows of their own: ``fhir.search.unions``)
VALUE_PARAMS = ("value-quantity", "component-value-quantity")
CODE_VALUE_PARAMS = ("code-value-quantity", "component-code-value-quantity")
OBSERVATION = "Observation"
VARIABLE = frozenset({"identifier", "subject", "patient", "device", "date", *VALUE_PARAMS,
                      *CODE_VALUE_PARAMS})


def _plain_row(row: Row) -> Reading | None:
    """The reading of a landed row that passes every check of ``check_row`` (the landing
    stored it in canonical units, rounded), found without building the wire form again; None
    when any check fails or cannot be made here, for ``check_row`` to say why."""
    kind = KINDS.get(row.kind)
    values, device, time = row.values, row.device, row.effective
    if kind is None or len(values) != (2 if row.kind == "blood_pressure" else 1) or \
            (len(values) == 2 and values[0] <= values[1]) or \
            not isinstance(device, str) or not 0 < len(device) <= 64 or \
            device != device.strip() or row.key != f"{device}/{row.kind}/{time}":
        return None
    for value in values:
        if not (isinstance(value, float) and math.isfinite(value) and round(value, 3) == value
                and kind.low <= value <= kind.high):
            return None
    for reference, rtype in ((row.patient, "Patient"), (row.device_ref, "Device")):
        prefix, _, id = reference.partition("/")
        if prefix != rtype or not ID_PATTERN.match(id):
            return None
    try:  # a FHIR dateTime (R4 §2.24.0.1) with a UTC offset
        if datetime.fromisoformat(time).tzinfo is None:
            return None
        date_range(time)
    except (TypeError, ValueError):
        return None
    return Reading(device, row.kind, values, time)


def check_row(row: Row) -> Reading:
    """The reading of a landed row, validated as strictly as at the landing (kind, unit, range,
    time), with its key and references; raises ``Unprocessable`` listing every problem.
    A row that passes every check (all of them, as the landing stores them) is read directly
    (``_plain_row``); the others go through the landing's own parser, which lists the problems.
    """
    return _plain_row(row) or _parsed_row(row)


def _parsed_row(row: Row) -> Reading:
    """``check_row`` through the landing's parser (``readings.parse_reading``)."""
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

    rows: IndexRows  # ``fixed`` as stored (blinded), with the idx_param rows of the kind
    value_codes: tuple[str, ...]  # LOINC of the value (one kind) or of each component (BP)


def _constant(found: IndexEntries) -> IndexEntries:
    def fixed(rows: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(row for row in rows if row.param not in VARIABLE)
    return IndexEntries(
        tokens=fixed(found.tokens), strings=fixed(found.strings),
        references=fixed(found.references), dates=fixed(found.dates),
        numbers=fixed(found.numbers), quantities=fixed(found.quantities),
        uris=fixed(found.uris), composites=fixed(found.composites),
        params=found.params - VARIABLE)  # each has rows of its own name: no idx_param row


class VitalSigns:
    """Builds the stored Observation and its index rows of a landed reading (module doc).

    ``indexer`` is the generic one: run once per kind on a sample, for the constant rows;
    ``blind`` the store's blind index when it encrypts (``crypto.blind``), else None."""

    def __init__(self, indexer: Callable[[dict[str, Any]], IndexEntries],
                 blind: BlindIndex | None = None) -> None:
        self._blind = blind
        self._blind_identifier = blind if blinded(OBSERVATION, "token", "identifier") else None
        self._templates: dict[str, _Template] = {}
        self._when: datetime | None = None
        self._instant = ""
        for name, kind in KINDS.items():
            values = (120.0, 80.0) if name == "blood_pressure" else (kind.low,)
            sample = to_observation(Reading("sample", name, values, "2024-01-01T00:00:00Z"),
                                    "Patient/sample", "Device/sample")
            constant = _constant(indexer({"resourceType": "Observation", "id": "sample",
                                          **sample}))
            if constant.dates:  # idx_date_sort needs every date row of a parameter at once
                raise ValueError("a date parameter of Observation is missing from VARIABLE")
            codes = (SYSTOLIC[0], DIASTOLIC[0]) if name == "blood_pressure" else (kind.loinc,)
            self._templates[name] = _Template(
                index_rows(OBSERVATION, self._blinded(constant)), codes)

    def _blinded(self, found: IndexEntries) -> IndexEntries:
        return found if self._blind is None else self._blind.entries(OBSERVATION, found)

    @functools.lru_cache(maxsize=65_536)  # noqa: B019 (one VitalSigns per materializer)
    def _valued(self, kind: str, values: tuple[float, ...]) -> IndexRows:
        """The constant rows of ``kind`` with the quantity and composite rows of ``values``
        (vital signs repeat their values), one list per table."""
        template = self._templates[kind]
        unit = KINDS[kind].unit
        if kind == "blood_pressure":
            value_params, code_params = VALUE_PARAMS[1:], CODE_VALUE_PARAMS[1:]
        else:
            value_params, code_params = VALUE_PARAMS[:1], CODE_VALUE_PARAMS[:1]
        quantities = [_named(param, _quantity(unit, value))
                      for param in value_params for value in values]
        composites = []
        for param in code_params:
            for code, value in zip(template.value_codes, values, strict=True):
                composites += _composites(param, code, _quantity(unit, value))
        merged: dict[str, list[tuple[Any, ...]]] = {}
        for table, found in [*template.rows, *index_rows(OBSERVATION, IndexEntries(
                quantities=tuple(quantities), composites=tuple(composites)))]:
            merged.setdefault(table, []).extend(found)
        return list(merged.items())

    def rows(self, reading: Reading, patient: str, device: str) -> IndexRows:
        """The index rows of the Observation of ``reading`` (references ``Patient/x``,
        ``Device/y``) as the store writes them: equal, table by table, to those of the generic
        indexer's entries. The rows of ``identifier``, the references and ``date`` are
        written out here in the columns of ``store.sql.indexing.INDEX_COLUMNS``."""
        patient_id = patient.partition("/")[2]
        code = reading.key if self._blind_identifier is None else \
            self._blind_identifier.code("identifier", reading.key)
        low, high = date_range(reading.time)
        return [*self._valued(reading.kind, reading.values),
                ("idx_token", [(OBSERVATION, "identifier", READING_SYSTEM, code, None)]),
                ("idx_reference", [(OBSERVATION, "device", "Device", device.partition("/")[2],
                                    None),
                                   (OBSERVATION, "patient", "Patient", patient_id, None),
                                   (OBSERVATION, "subject", "Patient", patient_id, None)]),
                ("idx_date", [(OBSERVATION, "date", low, high)]),
                ("idx_date_sort", [(OBSERVATION, "date", low, high, span_class(low, high))])]

    def change(self, row: Row, id: str, when: datetime) -> tuple[Change, IndexRows]:
        """The Change creating ``Observation/{id}`` (version 1 at ``when``) of the landed
        ``row``, and its index rows; ``Unprocessable`` when the row is not a valid reading.
        Its data key's owner is ``row.patient`` (the ``subject``)."""
        reading = check_row(row)
        if when != self._when:
            self._when, self._instant = when, instant(when)
        stored: dict[str, Any] = {"resourceType": OBSERVATION, "id": id,
                                  "meta": {"versionId": "1", "lastUpdated": self._instant}}
        stored.update(to_observation(reading, row.patient, row.device_ref))  # keeps the order
        change = Change(OBSERVATION, id, 1, 0, when, False, orjson.dumps(stored), stored)
        return change, self.rows(reading, row.patient, row.device_ref)
