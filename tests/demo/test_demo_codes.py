"""Code systems, codes and units of generated data: the right system for each element, codes
that pass their check digits (SNOMED CT Verhoeff, LOINC mod 10), UCUM units the R4 vital-signs
profiles require, and laboratory interpretations that agree with the reference range."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from medarchive.demo.codes import CVX, ICD10, LOINC, RXNORM, SNOMED, UCUM
from medarchive.demo.conditions import ACUTE, CHRONIC, DISEASES
from medarchive.demo.drugs import ALTERNATIVE, DRUGS
from medarchive.demo.events import EVENTS
from medarchive.demo.measures import LABS, PANELS

Resource = dict[str, Any]
Select = Callable[[str], list[Resource]]

# Verhoeff's dihedral check, which SNOMED CT identifiers carry in their last digit.
_D5 = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
       [2, 3, 4, 0, 1, 7, 8, 9, 5, 6], [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
       [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
       [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
       [8, 7, 6, 5, 9, 3, 2, 1, 0, 4], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]]
_STEP = [1, 5, 7, 6, 2, 8, 3, 0, 9, 4]
_PERM = [list(range(10))]
for _ in range(7):
    _PERM.append([_STEP[x] for x in _PERM[-1]])

# R4 vital-signs profiles (§11.9): LOINC code -> the UCUM unit its profile fixes.
VITAL_UNITS = {"8867-4": "/min", "9279-1": "/min", "2708-6": "%", "8310-5": "Cel",
               "29463-7": "kg", "8302-2": "cm", "39156-5": "kg/m2", "85354-9": None}


def verhoeff_ok(digits: str) -> bool:
    check = 0
    for position, char in enumerate(reversed(digits)):
        check = _D5[check][_PERM[position % 8][int(char)]]
    return check == 0


def loinc_ok(code: str) -> bool:
    number, check = code.split("-")
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char) * (2 if position % 2 == 0 else 1)
        total += digit - 9 if digit > 9 else digit
    return (10 - total % 10) % 10 == int(check)


def codings(node: Any) -> Iterator[Resource]:
    if isinstance(node, dict):
        if "system" in node and "code" in node:
            yield node
        for value in node.values():
            yield from codings(value)
    elif isinstance(node, list):
        for item in node:
            yield from codings(item)


def test_check_digit_helpers_can_fail() -> None:
    assert verhoeff_ok("22298006") and not verhoeff_ok("22298007")
    assert loinc_ok("8867-4") and not loinc_ok("8867-5")


def test_every_external_code_is_well_formed(resources: list[Resource],
                                            hospital: Resource) -> None:
    seen: dict[str, set[str]] = {}
    for coding in codings([*resources, hospital]):
        seen.setdefault(coding["system"], set()).add(coding["code"])
    bad = [c for c in seen[SNOMED] if not (verhoeff_ok(c) and c[-3:-1] == "00")]
    bad += [c for c in seen[LOINC] if not re.fullmatch(r"\d{1,6}-\d", c) or not loinc_ok(c)]
    bad += [c for c in seen[ICD10] if not re.fullmatch(r"[A-Z]\d\d(\.\d)?", c)]
    bad += [c for c in seen[RXNORM] | seen[CVX] if not c.isdigit()]
    assert not bad
    assert {SNOMED, LOINC, ICD10, RXNORM, CVX, UCUM} <= set(seen)


def test_the_curated_tables_pass_their_check_digits() -> None:
    snomed = [d.snomed.code for d in DISEASES.values()]
    assert all(verhoeff_ok(code) for code in snomed)
    assert all(loinc_ok(m.code.code) for m in LABS.values())
    assert all(loinc_ok(p.code.code) for p in PANELS.values())


def test_tables_refer_only_to_what_exists() -> None:
    used_drugs = {d for rule in CHRONIC for d in rule.drugs}
    used_drugs |= {d for rule in ACUTE for d in rule.drugs}
    used_drugs |= {d for e in EVENTS for d in e.inpatient} | {d for e in EVENTS
                                                             for d, _ in e.discharge}
    used_drugs |= set(ALTERNATIVE) | set(ALTERNATIVE.values())
    assert used_drugs <= set(DRUGS)
    diseases = {r.key for r in CHRONIC} | {r.key for r in ACUTE}
    diseases |= {e.disease for e in EVENTS if e.disease} | {e.requires for e in EVENTS
                                                            if e.requires}
    assert diseases <= set(DISEASES)
    panels = {p for rule in CHRONIC for p in rule.labs} | {p for e in EVENTS for p in e.labs}
    assert panels <= set(PANELS)
    assert {t for p in PANELS.values() for t in p.tests} <= set(LABS)


def test_conditions_carry_icd10_and_snomed(by_type: Select) -> None:
    conditions = by_type("Condition")
    assert conditions
    for condition in conditions:
        systems = [c["system"] for c in condition["code"]["coding"]]
        assert systems == [ICD10, SNOMED]
        assert condition["clinicalStatus"]["coding"][0]["system"] == (
            "http://terminology.hl7.org/CodeSystem/condition-clinical")
        assert condition["verificationStatus"]["coding"][0]["system"] == (
            "http://terminology.hl7.org/CodeSystem/condition-ver-status")
        status = condition["clinicalStatus"]["coding"][0]["code"]
        assert ("abatementDateTime" in condition) == (status in ("resolved", "remission"))


def test_vital_signs_follow_the_r4_profiles(by_type: Select) -> None:
    vitals = [o for o in by_type("Observation")
              if o["category"][0]["coding"][0]["code"] == "vital-signs"]
    found = set()
    for obs in vitals:
        assert obs["category"][0]["coding"][0]["system"] == (
            "http://terminology.hl7.org/CodeSystem/observation-category")
        loinc = [c["code"] for c in obs["code"]["coding"] if c["system"] == LOINC]
        profile = [code for code in loinc if code in VITAL_UNITS]
        assert len(profile) == 1, loinc
        code = profile[0]
        found.add(code)
        assert "effectiveDateTime" in obs and "subject" in obs
        if code == "85354-9":
            parts = {c["code"]["coding"][0]["code"]: c["valueQuantity"]
                     for c in obs["component"]}
            assert set(parts) == {"8480-6", "8462-4"}
            assert all(q["code"] == "mm[Hg]" and q["system"] == UCUM for q in parts.values())
            assert parts["8480-6"]["value"] > parts["8462-4"]["value"]
        else:
            quantity = obs["valueQuantity"]
            assert quantity["system"] == UCUM and quantity["code"] == VITAL_UNITS[code]
        if code == "2708-6":
            assert "59408-5" in loinc
    assert found == set(VITAL_UNITS)


@pytest.mark.parametrize(("code", "low", "high"), [
    ("8867-4", 35, 190), ("9279-1", 8, 50), ("2708-6", 80, 100), ("8310-5", 35.5, 41.0),
    ("29463-7", 2.0, 250), ("8302-2", 40, 210), ("39156-5", 10, 60)])
def test_vital_values_are_physiological(by_type: Select, code: str, low: float,
                                        high: float) -> None:
    values = [o["valueQuantity"]["value"] for o in by_type("Observation")
              if o["code"]["coding"][0]["code"] == code]
    assert values and all(low <= v <= high for v in values)


def test_laboratory_results_are_consistent(by_type: Select) -> None:
    labs = {}
    for obs in by_type("Observation"):
        if obs["category"][0]["coding"][0]["code"] != "laboratory":
            continue
        quantity = obs["valueQuantity"]
        assert quantity["system"] == UCUM
        limits = obs["referenceRange"][0]
        value = quantity["value"]
        expected = "L" if "low" in limits and value < limits["low"]["value"] else (
            "H" if "high" in limits and value > limits["high"]["value"] else "N")
        assert obs["interpretation"][0]["coding"][0]["code"] == expected
        labs[id(obs)] = obs
    assert len(labs) > 100
    by_url = {obs["code"]["coding"][0]["code"]: obs for obs in labs.values()}
    assert {"2345-7", "4548-4", "2160-0", "718-7", "6690-2", "2951-2", "2823-3"} <= set(by_url)
    reports = by_type("DiagnosticReport")
    assert reports and all(r["category"][0]["coding"][0]["code"] == "LAB" for r in reports)
    assert all(r["result"] for r in reports)


def test_medications_are_rxnorm_with_structured_dosage(by_type: Select) -> None:
    for request in by_type("MedicationRequest"):
        assert request["medicationCodeableConcept"]["coding"][0]["system"] == RXNORM
        dosage = request["dosageInstruction"][0]
        repeat = dosage["timing"]["repeat"]
        assert repeat["frequency"] >= 1 and repeat["periodUnit"] == "d"
        dose = dosage["doseAndRate"][0]["doseQuantity"]
        assert dose["system"] == UCUM and dose["value"] > 0


def test_immunizations_are_cvx(by_type: Select) -> None:
    immunizations = by_type("Immunization")
    assert immunizations
    assert all(i["vaccineCode"]["coding"][0]["system"] == CVX for i in immunizations)


def test_procedures_and_allergies_are_snomed(by_type: Select) -> None:
    assert all(p["code"]["coding"][0]["system"] == SNOMED for p in by_type("Procedure"))
    allergies = by_type("AllergyIntolerance")
    assert allergies
    for allergy in allergies:
        assert allergy["code"]["coding"][0]["system"] == SNOMED
        assert allergy["code"]["coding"][0]["display"].endswith(("(substance)", "(organism)"))
        assert all(m["coding"][0]["system"] == SNOMED
                   for m in allergy["reaction"][0]["manifestation"])


def test_patient_identifiers(by_type: Select) -> None:
    patients = by_type("Patient")
    mrns = set()
    for patient in patients:
        mrn = patient["identifier"][0]
        assert mrn["type"]["coding"][0]["code"] == "MR"
        assert mrn["system"].startswith("https://")
        mrns.add(mrn["value"])
    assert len(mrns) == len(patients)
