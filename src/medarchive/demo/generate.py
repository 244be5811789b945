"""The demo data generator's entry points: patient bundles, the hospital bundle, flat NDJSON.

``generate`` yields one FHIR R4 transaction Bundle per synthetic patient, lazily, so a run of
100,000 patients needs no more memory than one. Every patient has its own random streams,
derived from the seed and the patient's number, so the output is the same byte for byte for
the same arguments, ``generate(n)`` is a prefix of ``generate(n + k)``, and any patient can be
regenerated alone.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from medarchive.demo import clinical, observations
from medarchive.demo.history import plan_patient
from medarchive.demo.hospital import MRN_SYSTEM, reference_bundle
from medarchive.demo.people import (
    address,
    communication,
    marital_status,
    mrn_identifier,
    national_identifier,
    person_name,
    telecom,
)
from medarchive.demo.plan import Plan, clinician
from medarchive.demo.writer import Writer, day_text, shared, stamp

DEFAULT_START = date(2015, 1, 1)
YEARS = 10  # length of the record window


def window(start: date | None) -> tuple[int, int]:
    """First and last day (ordinals) of the record window that begins on ``start``."""
    first = start or DEFAULT_START
    try:
        after = first.replace(year=first.year + YEARS)
    except ValueError:  # 29 February
        after = first.replace(year=first.year + YEARS, day=28)
    return first.toordinal(), (after - timedelta(days=1)).toordinal()


def mrn(seed: int, index: int) -> str:
    """The patient's medical record number: unique within a seed, 8 digits."""
    return f"{(index * 7919 + seed * 1000003) % 90000000 + 10000000:08d}"


def patient_writer(seed: int, index: int, start: date | None, urn: bool) -> Writer:
    """Plan and write patient number ``index`` of ``seed``."""
    first, last = window(start)
    plan = plan_patient(index, random.Random(f"medarchive-demo:{seed}:{index}"), first, last)
    w = Writer(random.Random(f"medarchive-demo:{seed}:{index}:ids"), urn)
    _assign_ids(w, plan)
    number = mrn(seed, index)
    _patient(w, plan, number)
    for allergen, onset, visit in plan.allergies:
        if visit is not None:
            clinical.allergy(w, plan, allergen, onset, visit)
    for ordinal, visit in enumerate(plan.visits, start=1):
        visit.reasons = [c for c in visit.reasons
                         if c.uid and c.recorded is not None and c.recorded <= visit.day]
        clinical.encounter(w, plan, visit, f"{number}-{ordinal:04d}")
        for item in visit.diagnoses:
            clinical.condition(w, plan, item)
        if visit.smoking:
            observations.smoking_status(w, plan, visit)
        observations.vitals(w, plan, visit)
        observations.labs(w, plan, visit)
        for key in visit.procedures:
            clinical.procedure(w, plan, visit, key)
        for course in visit.orders:
            clinical.medication_request(w, plan, course)
        for key in visit.vaccines:
            clinical.immunization(w, plan, visit, key)
    return w


def _assign_ids(w: Writer, plan: Plan) -> None:
    w.patient = w.uid()
    for visit in plan.visits:
        visit.uid = w.uid()
        for item in visit.diagnoses:
            item.uid = w.uid()
        for course in visit.orders:
            course.uid = w.uid()


def _patient(w: Writer, plan: Plan, number: str) -> None:
    """The Patient (R4 §8.1): identifiers, bilingual names, contacts, and death if any."""
    rng = plan.rng
    patient = w.start("Patient", w.patient)
    age = plan.age(plan.rec_end)
    patient["identifier"] = [mrn_identifier(MRN_SYSTEM, number)]
    if age >= 1 or rng.random() < 0.5:
        patient["identifier"].append(national_identifier(rng))
    patient["active"] = True
    names = person_name(rng, plan.female, plan.chinese)
    patient["name"] = names
    patient["telecom"] = telecom(rng, names[-1], age)
    patient["gender"] = "female" if plan.female else "male"
    patient["birthDate"] = day_text(plan.birth)
    if plan.death is not None:
        last = plan.visits[-1] if plan.visits else None
        if last is not None and last.disposition == "exp":
            patient["deceasedDateTime"] = stamp(last.day + last.stay, last.end_minute)
        else:
            patient["deceasedDateTime"] = stamp(plan.death, 23 * 60 + 59)
    patient["address"] = [address(rng)]
    marital = marital_status(rng, age)
    if marital is not None:
        patient["maritalStatus"] = marital
    patient["communication"] = communication(rng, plan.chinese)
    primary = "pediatrics" if age < 18 else "family-medicine"
    patient["generalPractitioner"] = [shared("Practitioner",
                                             f"prac-{clinician(plan, primary, False):04d}")]
    patient["managingOrganization"] = clinical.organization_ref()


def generate(patients: int, seed: int = 0, start: date | None = None) -> Iterator[dict[str, Any]]:
    """Yield one transaction Bundle (R4 §3.1.0.11.2) per synthetic patient, lazily.

    Entries are POSTs with ``urn:uuid:`` full URLs and refer to each other by those URNs, and to
    the shared hospital resources of :func:`reference_bundle` by ``Type/id``. ``start`` is the
    first day of the ten-year record window (default 2015-01-01).
    """
    for index in range(patients):
        yield patient_writer(seed, index, start, urn=True).bundle()


def generate_ndjson(patients: int, seed: int = 0, start: date | None = None,
                    reference: bool = True) -> Iterator[dict[str, Any]]:
    """Yield the same resources flat, for bulk (NDJSON) loading, each with its final ``id``.

    Ids are the uuids of the bundle form (``fullUrl`` ``urn:uuid:X`` becomes ``id`` X) and
    references are ``Type/id``. With ``reference`` (the default) the hospital's shared
    resources of :func:`reference_bundle` come first, so every reference resolves.
    """
    if reference:
        for entry in reference_bundle(seed)["entry"]:
            yield entry["resource"]
    for index in range(patients):
        for _, resource in patient_writer(seed, index, start, urn=False).resources:
            yield resource
