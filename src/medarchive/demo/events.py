"""Emergencies and hospital stays: pneumonia, exacerbations, infarcts, strokes, fractures, sepsis,
and the last admission of patients who die in hospital.

An inpatient record is where most of a hospital's data lives: an emergency visit that becomes
an admission, a stay across the emergency room, the intensive care unit and a ward, vital signs
every day trending toward recovery, laboratory panels on admission and before discharge,
procedures, in-hospital drugs and discharge prescriptions, and a discharge disposition. Event
rates depend on age and on the chronic diseases the patient has, so the sick are admitted more.
"""

from __future__ import annotations

from dataclasses import dataclass

from medarchive.demo.conditions import age_band
from medarchive.demo.plan import (
    Condition,
    Plan,
    Visit,
    clinician,
    diagnose,
    in_hospital,
    new_visit,
    order,
)


@dataclass(frozen=True, slots=True)
class Event:
    """An acute problem that brings a patient to the emergency department."""

    key: str  # physiology key
    disease: str | None  # the diagnosis charted; None for an exacerbation of ``requires``
    requires: str | None  # chronic disease the patient must have
    rate: tuple[float, float, float, float, float]  # per person-year, by age band
    risks: tuple[tuple[str, float], ...]
    admit: float  # share admitted (the rest go home from the emergency department)
    stay: tuple[int, int]  # nights in hospital, low and high
    icu: float  # share who spend nights in intensive care
    ward: str
    department: str  # admitting department
    labs: tuple[str, ...]
    late_labs: tuple[str, ...]
    procedures: tuple[str, ...]
    inpatient: tuple[str, ...]  # drugs given during the stay
    discharge: tuple[tuple[str, int | None], ...]  # (drug, days or None for long-term)
    fever: float
    resolves: int | None  # days after onset the diagnosis resolves
    fatal: float  # weight as the final illness of a patient who dies in hospital


EVENTS: tuple[Event, ...] = (
    Event("pneumonia", "pneumonia", None, (0.006, 0.002, 0.003, 0.012, 0.03),
          (("copd", 3.0), ("heart-failure", 2.0), ("smoker", 1.5)), 0.55, (3, 7), 0.1,
          "medical-ward", "internal-medicine", ("cbc", "bmp", "crp"), ("cbc", "crp"),
          ("chest-xray",), ("ceftriaxone",), (("amox-clav", 5),), 1.8, 21, 3.0),
    Event("hf-exacerbation", None, "heart-failure", (0.25,) * 5, (), 0.85, (3, 6), 0.08,
          "cardiac-ward", "cardiology", ("bmp", "ntprobnp", "cbc", "troponin"), ("bmp",),
          ("chest-xray", "ecg"), ("furosemide-iv",), (), 0.0, None, 3.0),
    Event("copd-exacerbation", "copd-exacerbation", "copd", (0.3,) * 5, (), 0.5, (2, 5), 0.05,
          "medical-ward", "pulmonology", ("cbc", "bmp"), (), ("chest-xray",), (),
          (("prednisone", 5), ("azithromycin", 5)), 0.5, 14, 2.0),
    Event("asthma-exacerbation", None, "asthma", (0.08,) * 5, (), 0.1, (1, 3), 0.0,
          "medical-ward", "pulmonology", (), (), (), (), (("prednisone", 5),), 0.0, None, 0.0),
    Event("mi", "mi", None, (0.0, 0.0003, 0.002, 0.005, 0.008),
          (("chd", 4.0), ("diabetes", 1.5), ("hypertension", 1.4), ("smoker", 2.0)), 1.0,
          (3, 6), 0.6, "cardiac-ward", "cardiology", ("troponin", "cbc", "bmp", "lipid"),
          ("troponin",), ("ecg", "pci"), ("enoxaparin",),
          (("aspirin", None), ("clopidogrel", 365), ("atorvastatin", None), ("metoprolol", None)),
          0.0, 42, 3.0),
    Event("stroke", "stroke", None, (0.0, 0.0002, 0.001, 0.004, 0.01),
          (("atrial-fibrillation", 3.0), ("hypertension", 1.5), ("smoker", 1.5),
           ("diabetes", 1.3)), 1.0, (4, 9), 0.15, "medical-ward", "neurology",
          ("cbc", "bmp", "lipid"), (), ("ct-head", "ecg"), (),
          (("clopidogrel", None), ("atorvastatin", None)), 0.0, 90, 3.0),
    Event("hip-fracture", "hip-fracture", None, (0.0, 0.0, 0.0003, 0.003, 0.012),
          (("osteoporosis", 3.0), ("alzheimers", 2.0)), 1.0, (4, 8), 0.0, "surgical-ward",
          "orthopedics", ("cbc", "bmp"), ("cbc",), ("hip-replacement",), ("enoxaparin",),
          (("oxycodone-apap", 7), ("enoxaparin", 21)), 0.0, 90, 1.0),
    Event("appendicitis", "appendicitis", None, (0.0012, 0.0012, 0.0006, 0.0003, 0.0002), (),
          1.0, (1, 3), 0.0, "surgical-ward", "general-surgery", ("cbc", "bmp", "crp"), (),
          ("abdominal-us", "appendectomy"), ("ceftriaxone",), (("acetaminophen", 5),), 1.0, 21,
          0.0),
    Event("sepsis", "sepsis", None, (0.0005, 0.0003, 0.001, 0.004, 0.01),
          (("diabetes", 1.5), ("ckd", 1.5), ("copd", 1.3)), 1.0, (5, 12), 0.7, "medical-ward",
          "internal-medicine", ("cbc", "cmp", "lactate", "crp"), ("cbc", "lactate"),
          ("chest-xray",), ("ceftriaxone",), (), 2.0, 30, 5.0),
)
EVENT = {event.key: event for event in EVENTS}
_OUTPATIENT_DRUG = {"pneumonia": (("azithromycin", 5),)}
_ONCE = {"appendicitis", "hip-fracture"}  # an appendix, a replaced hip: not twice


def plan_events(plan: Plan) -> None:
    """Draw the emergencies of every year of the record, then the final admission, if any."""
    rng = plan.rng
    year = plan.rec_start
    while year < plan.rec_end:
        band = age_band(plan.age(year))
        for event in EVENTS:
            rate = event.rate[band]
            for risk, factor in event.risks:
                if plan.has(risk, year) or (risk == "smoker" and plan.smoker == "current"):
                    rate *= factor
            if rng.random() >= rate:
                continue
            day = year + int(rng.random() * 365)
            if day + event.stay[1] >= plan.rec_end or in_hospital(plan, day) or \
                    in_hospital(plan, day + event.stay[1]):
                continue
            if event.requires and not plan.has(event.requires, day - 30):
                continue
            if event.key in _ONCE and any(v.event == event.key for v in plan.visits):
                continue
            _present(plan, event, day, terminal=False)
        year += 365
    if plan.death is not None and rng.random() < 0.55:
        _final_admission(plan)


def _present(plan: Plan, event: Event, day: int, terminal: bool) -> Visit:
    rng = plan.rng
    age = plan.age(day)
    admit = terminal or rng.random() < min(1.0, event.admit + (0.3 if age >= 70 else 0.0))
    if not admit:
        visit = new_visit(plan, day, "acute", "EMER", "emergency")
        visit.vitals = "ed"
    else:
        stay = event.stay[0] + int(rng.random() * (event.stay[1] - event.stay[0] + 1))
        if terminal:
            day = max(plan.rec_start, (plan.death or day) - stay)
            stay = (plan.death or day) - day
        department = "pediatrics" if age < 18 else event.department
        visit = new_visit(plan, day, "admission", "IMP", department)
        visit.clinician = clinician(plan, department, True)
        visit.triage = clinician(plan, "emergency", True)
        visit.stay = stay
        visit.end_minute = 9 * 60 + int(rng.random() * 8) * 60
        if stay == 0:  # died on the day of admission
            visit.minute = min(visit.minute, 1439 - 300)
            visit.end_minute = visit.minute + 240 + int(rng.random() * 60)
        visit.ward = "pediatric-ward" if age < 18 and event.ward != "cardiac-ward" \
            else event.ward
        if rng.random() < event.icu or (terminal and rng.random() < 0.5):
            visit.icu = min(stay, 1 + int(rng.random() * 3))
        visit.vitals = "inpatient"
        visit.late_labs.extend(event.late_labs if stay >= 2 else ())
        visit.disposition = "exp" if terminal else _disposition(plan, event, age)
    visit.event = event.key
    visit.fever = event.fever * (0.7 + 0.5 * rng.random()) if event.fever else 0.0
    visit.labs.extend(event.labs)
    visit.procedures.extend(p for p in event.procedures if admit or p.endswith("xray"))
    condition = _reason(plan, visit, event, day)
    if admit:
        for drug in event.inpatient:
            order(plan, visit, drug, max(1, visit.stay), condition)
    discharge = event.discharge if admit else _OUTPATIENT_DRUG.get(event.key, event.discharge)
    if not terminal:
        leave = day + visit.stay
        for drug, days in discharge:
            order(plan, visit, drug, days, condition, start=leave)
    return visit


def _reason(plan: Plan, visit: Visit, event: Event, day: int) -> Condition | None:
    if event.disease is None:
        existing = plan.chronic.get(event.requires or "")
        if existing is not None:
            visit.reasons.append(existing)
        return existing
    resolves = event.resolves if visit.disposition != "exp" else None
    condition = diagnose(plan, visit, event.disease, day, resolves)
    if event.key == "mi" and "chd" not in plan.chronic:
        chd = Condition("chd", day, True)
        chd.recorded = day
        chd.visit = visit
        plan.chronic["chd"] = chd
        visit.diagnoses.append(chd)
    return condition


def _disposition(plan: Plan, event: Event, age: float) -> str:
    draw = plan.rng.random()
    if event.key in ("hip-fracture", "stroke") and age >= 65:
        return "snf" if draw < 0.35 else "rehab" if draw < 0.65 else "home"
    if age >= 80 and draw < 0.15:
        return "snf"
    return "home"


def _final_admission(plan: Plan) -> None:
    death = plan.death or plan.rec_end
    candidates = [e for e in EVENTS if e.fatal and (e.requires is None or
                                                    plan.has(e.requires, death - 30))]
    weights = []
    for event in candidates:
        weight = event.fatal
        for risk, factor in event.risks:
            if plan.has(risk, death):
                weight *= factor
        weights.append(weight)
    draw = plan.rng.random() * sum(weights)
    chosen = 0
    while chosen < len(candidates) - 1 and draw >= weights[chosen]:
        draw -= weights[chosen]
        chosen += 1
    event = candidates[chosen]
    if in_hospital(plan, death - event.stay[1]) or in_hospital(plan, death):
        return
    _present(plan, event, death, terminal=True)
