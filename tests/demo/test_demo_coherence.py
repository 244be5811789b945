"""The generated population looks like a hospital's: diseases vary with age and sex, drugs
match their indications, values follow the disease, stays trend toward recovery, and the dead
stop having encounters."""

from __future__ import annotations

from collections import defaultdict
from statistics import mean
from typing import Any

import pytest

from medarchive.demo import generate

Resource = dict[str, Any]
POPULATION = 300

# A clinician's view of what each drug treats (SNOMED CT of the indication).
INDICATION = {
    "861007": {"44054006"},  # metformin: type 2 diabetes
    "106892": {"44054006"},  # insulin 70/30
    "966222": {"40930008"},  # levothyroxine: hypothyroidism
    "1364445": {"49436004"},  # apixaban: atrial fibrillation
    "855332": {"49436004"},  # warfarin
    "904419": {"64859006"},  # alendronate: osteoporosis
    "311995": {"68566005"},  # nitrofurantoin: UTI
    "197319": {"90560007"},  # allopurinol: gout
    "310436": {"26929004"},  # galantamine: Alzheimer's
    "745679": {"195967001", "13645005"},  # albuterol: asthma, COPD
    "1665021": {"233604007", "91302008", "85189001"},  # ceftriaxone
}


def _key(resource: Resource) -> str:
    return str(resource["code"]["coding"][-1]["code"])


@pytest.fixture(scope="module")
def population() -> list[list[Resource]]:
    """Each patient's resources, each with its bundle uuid kept under ``_uid``."""
    return [[{**e["resource"], "_uid": e["fullUrl"].removeprefix("urn:uuid:")}
             for e in b["entry"]] for b in generate(POPULATION, seed=21)]


def _age(patient: Resource, when: str) -> float:
    born = patient["birthDate"]
    return int(when[:4]) - int(born[:4]) + (int(when[5:7]) - int(born[5:7])) / 12


def test_counts_scale_with_patients() -> None:
    small, large = list(generate(40, seed=2)), list(generate(120, seed=2))
    assert len(small) == 40 and len(large) == 120
    assert all(sum(e["resource"]["resourceType"] == "Patient" for e in b["entry"]) == 1
               for b in large)
    ratio = sum(len(b["entry"]) for b in large) / sum(len(b["entry"]) for b in small)
    assert 2.0 < ratio < 4.5


def test_diseases_follow_age_and_sex(population: list[list[Resource]]) -> None:
    groups: dict[str, list[bool]] = defaultdict(list)
    for record in population:
        patient = record[0]
        codes = {_key(r) for r in record if r["resourceType"] == "Condition"}
        age = _age(patient, "2024-12-31")
        sex = patient["gender"]
        if age >= 18:
            groups["adult-" + sex].append("68566005" in codes)  # UTI
        if age >= 60:
            groups["old"].append("59621000" in codes)  # hypertension
            groups["old-" + sex + "-bones"].append("64859006" in codes)  # osteoporosis
        elif 18 <= age < 40:
            groups["young"].append("59621000" in codes)
    share = {k: mean(v) for k, v in groups.items()}
    assert share["old"] > 2 * share["young"]
    assert share["adult-female"] > share["adult-male"]
    assert share["old-female-bones"] > share["old-male-bones"]


def test_drugs_match_their_indications(population: list[list[Resource]]) -> None:
    checked = 0
    for record in population:
        conditions = {f"urn:uuid:{r['_uid']}": r for r in record
                      if r["resourceType"] == "Condition"}
        for request in (r for r in record if r["resourceType"] == "MedicationRequest"):
            rxnorm = request["medicationCodeableConcept"]["coding"][0]["code"]
            if rxnorm not in INDICATION:
                continue
            reasons = {_key(conditions[ref["reference"]])
                       for ref in request.get("reasonReference", ())}
            assert reasons and reasons <= INDICATION[rxnorm], (rxnorm, reasons)
            checked += 1
    assert checked > 20


def test_hba1c_follows_diabetes(population: list[list[Resource]]) -> None:
    diabetic: list[float] = []
    other: list[float] = []
    for record in population:
        has = any(r["resourceType"] == "Condition" and _key(r) == "44054006" for r in record)
        values = [r["valueQuantity"]["value"] for r in record
                  if r["resourceType"] == "Observation" and _key(r) == "4548-4"]
        (diabetic if has else other).extend(values)
    assert diabetic and other
    assert mean(diabetic) > 6.5 > 6.0 > mean(other)


def test_stays_trend_toward_recovery(population: list[list[Resource]]) -> None:
    falls = []
    for record in population:
        for encounter in (r for r in record if r["resourceType"] == "Encounter"
                          and r["class"]["code"] == "IMP"):
            assert encounter["hospitalization"]["admitSource"]["coding"][0]["code"] == "emd"
            assert encounter["location"][0]["location"]["reference"].startswith("Location/loc-ed")
            if "233604007" not in {c["coding"][-1]["code"]
                                   for c in encounter.get("reasonCode", ())}:
                continue
            uid = encounter["_uid"]
            temps = [r["valueQuantity"]["value"] for r in record
                     if r["resourceType"] == "Observation" and _key(r) == "8310-5"
                     and r["encounter"]["reference"] == f"urn:uuid:{uid}"]
            falls.append(temps[0] - temps[-1])
    assert falls, "no pneumonia admission in the population"
    assert mean(falls) > 0.8


def test_the_dead_have_no_later_care(population: list[list[Resource]]) -> None:
    deaths = 0
    for record in population:
        patient = record[0]
        if "deceasedDateTime" not in patient:
            continue
        deaths += 1
        died = patient["deceasedDateTime"]
        encounters = sorted((r for r in record if r["resourceType"] == "Encounter"),
                            key=lambda r: r["period"]["end"])
        if encounters and encounters[-1].get("hospitalization", {}).get(
                "dischargeDisposition", {}).get("coding", [{}])[0].get("code") == "exp":
            assert encounters[-1]["period"]["end"] == died
        assert all(r["status"] != "active" for r in record
                   if r["resourceType"] == "MedicationRequest")
    assert 0.02 * POPULATION < deaths < 0.25 * POPULATION


def test_vaccines_fit_the_age(population: list[list[Resource]]) -> None:
    childhood = {"08", "20", "10", "49", "133", "119", "03", "21", "83"}
    given: dict[str, list[float]] = defaultdict(list)
    for record in population:
        patient = record[0]
        for shot in (r for r in record if r["resourceType"] == "Immunization"):
            code = shot["vaccineCode"]["coding"][0]["code"]
            given[code].append(_age(patient, shot["occurrenceDateTime"]))
    assert all(age < 7 for code in childhood for age in given[code])
    assert all(age >= 49.9 for age in given["187"]) and given["140"]


def test_chinese_patients_have_names_in_characters(population: list[list[Resource]]) -> None:
    chinese = 0
    for record in population:
        names = record[0]["name"]
        official = names[0]
        if all("\u4e00" <= ch <= "\u9fff" for ch in official["text"]):
            chinese += 1
            assert official["text"] == official["family"] + official["given"][0]
            assert names[1]["use"] == "usual" and names[1]["text"].isascii()
        else:
            assert official["text"].isascii()
    assert 0.15 * POPULATION < chinese < 0.35 * POPULATION
