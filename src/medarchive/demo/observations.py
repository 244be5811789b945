"""Observations and DiagnosticReports: vital signs, laboratory results, smoking status.

Vital signs conform to the R4 vital-signs profiles (§11.9: category ``vital-signs``, the
profile's LOINC code, UCUM quantity; blood pressure as the 85354-9 panel with systolic and
diastolic components; SpO2 with the 2708-6 code the profile fixes plus pulse-oximetry 59408-5).
Laboratory results (§11.1 "Observation", category ``laboratory``) carry a UCUM quantity, the
reference range for the patient's sex and an H/L/N interpretation, and are grouped under one
DiagnosticReport per panel (§11.5).
"""

from __future__ import annotations

from typing import Any

from medarchive.demo.codes import (
    INTERPRETATION,
    LAB_SECTION,
    LABORATORY,
    SMOKING,
    SMOKING_STATUS,
    SOCIAL_HISTORY,
    UCUM,
    VITAL_SIGNS,
)
from medarchive.demo.measures import BLOOD_PRESSURE, LABS, PANELS, SPO2_BASE, VITALS, Measure
from medarchive.demo.physiology import lab_values, vital_signs
from medarchive.demo.plan import Plan, Visit
from medarchive.demo.writer import Writer, shared, stamp

# Which vital signs each kind of visit measures.
_SETS = {
    "clinic": ("bp", "heart-rate", "respiratory-rate", "temperature", "weight", "height", "bmi"),
    "follow-up": ("bp", "heart-rate", "weight", "bmi"),
    "child": ("heart-rate", "temperature", "weight", "height", "bmi", "bp"),
    "sick": ("heart-rate", "respiratory-rate", "temperature", "bp", "spo2"),
    "ed": ("heart-rate", "respiratory-rate", "temperature", "bp", "spo2"),
    "inpatient": ("heart-rate", "respiratory-rate", "temperature", "bp", "spo2"),
}
_RESPIRATORY = {"pneumonia", "copd-exacerbation", "asthma-exacerbation", "bronchitis",
                "covid-19", "hf-exacerbation", "sepsis", "viral-uri"}


def _quantity(measure: Measure, value: float) -> dict[str, Any]:
    number: float | int = round(value, measure.decimals) if measure.decimals else round(value)
    return {"value": number, "unit": measure.unit_text, "system": UCUM, "code": measure.unit}


def vital_sign_set(w: Writer, plan: Plan, visit: Visit, day: int, minute: int,
                   severity: float, extra: tuple[str, ...] = ()) -> None:
    """One round of vital signs, as the visit kind prescribes."""
    values = vital_signs(plan, visit, day, severity)
    age = plan.age(day)
    when = stamp(day, minute)
    keys = _SETS[visit.vitals] + extra
    for key in keys:
        if (key == "bp" and age < 3) or (key == "bmi" and age < 2):
            continue
        if key == "spo2" and visit.vitals == "sick" and visit.event not in _RESPIRATORY:
            continue
        obs = w.start("Observation", w.uid())
        obs["status"] = "final"
        obs["category"] = [VITAL_SIGNS.concept()]
        if key == "bp":
            obs["code"] = BLOOD_PRESSURE.named("Blood pressure")
        elif key == "spo2":
            measure = VITALS["spo2"]
            obs["code"] = {"coding": [SPO2_BASE.coding(), measure.code.coding()],
                           "text": "Oxygen saturation"}
        else:
            obs["code"] = VITALS[key].code.named()
        obs["subject"] = w.subject()
        obs["encounter"] = w.ref("Encounter", visit.uid)
        obs["effectiveDateTime"] = when
        if key == "bp":
            obs["component"] = [
                {"code": VITALS[part].code.named(),
                 "valueQuantity": _quantity(VITALS[part], values[part])}
                for part in ("systolic", "diastolic")]
        else:
            obs["valueQuantity"] = _quantity(VITALS[key], values[key])


def vitals(w: Writer, plan: Plan, visit: Visit) -> None:
    """The vital signs of a visit: once, or every morning of a hospital stay."""
    if not visit.vitals:
        return
    if visit.cls != "IMP":
        vital_sign_set(w, plan, visit, visit.day, visit.minute + 8, 1.0 if visit.event else 0.0)
        return
    weight = ("weight",) if visit.event == "hf-exacerbation" else ()
    for night in range(visit.stay + 1):
        severity = 1.0 - night / (visit.stay + 1.0)
        minute = visit.minute + 10 if night == 0 else 6 * 60 + int(plan.rng.random() * 30)
        vital_sign_set(w, plan, visit, visit.day + night, minute, severity, weight)


def labs(w: Writer, plan: Plan, visit: Visit) -> None:
    """Laboratory panels ordered at the visit (and repeated before discharge)."""
    if visit.labs:
        _panels(w, plan, visit, visit.labs, visit.day, visit.minute + 25, 1.0)
    if visit.late_labs and visit.stay:
        severity = 0.5 / (visit.stay + 1.0)
        _panels(w, plan, visit, visit.late_labs, visit.day + visit.stay, 5 * 60 + 30, severity)


def _panels(w: Writer, plan: Plan, visit: Visit, panels: list[str], day: int, minute: int,
            severity: float) -> None:
    values = lab_values(plan, visit, day, severity if visit.event else 0.0)
    female = plan.female
    adult = plan.age(day) >= 18
    drawn = stamp(day, minute)
    issued = stamp(day, minute + 90 + int(plan.rng.random() * 120))
    for key in panels:
        panel = PANELS[key]
        results = []
        for test in panel.tests:
            if test == "egfr" and not adult:
                continue
            measure = LABS[test]
            uid = w.uid()
            obs = w.start("Observation", uid)
            obs["status"] = "final"
            obs["category"] = [LABORATORY.concept()]
            obs["code"] = measure.code.named()
            obs["subject"] = w.subject()
            obs["encounter"] = w.ref("Encounter", visit.uid)
            obs["effectiveDateTime"] = drawn
            obs["issued"] = issued
            quantity = _quantity(measure, values[test])
            obs["valueQuantity"] = quantity
            low, high = measure.normal(female)
            value = quantity["value"]
            flag = "L" if low is not None and value < low else "H" if (
                high is not None and value > high) else "N"
            obs["interpretation"] = [INTERPRETATION[flag].concept()]
            limits: dict[str, Any] = {}
            if low is not None:
                limits["low"] = {"value": low, "unit": measure.unit_text, "system": UCUM,
                                 "code": measure.unit}
            if high is not None:
                limits["high"] = {"value": high, "unit": measure.unit_text, "system": UCUM,
                                  "code": measure.unit}
            obs["referenceRange"] = [limits]
            results.append(w.ref("Observation", uid))
        report = w.start("DiagnosticReport", w.uid())
        report["status"] = "final"
        report["category"] = [LAB_SECTION.concept()]
        report["code"] = panel.code.named()
        report["subject"] = w.subject()
        report["encounter"] = w.ref("Encounter", visit.uid)
        report["effectiveDateTime"] = drawn
        report["issued"] = issued
        report["performer"] = [shared("Organization", "dept-laboratory", "Clinical Laboratory")]
        report["result"] = results


def smoking_status(w: Writer, plan: Plan, visit: Visit) -> None:
    """Tobacco smoking status (LOINC 72166-2), recorded once, at the first adult visit."""
    obs = w.start("Observation", w.uid())
    obs["status"] = "final"
    obs["category"] = [SOCIAL_HISTORY.concept()]
    obs["code"] = SMOKING_STATUS.named()
    obs["subject"] = w.subject()
    obs["encounter"] = w.ref("Encounter", visit.uid)
    obs["effectiveDateTime"] = stamp(visit.day, visit.minute + 5)
    obs["valueCodeableConcept"] = SMOKING[plan.smoker].named()
