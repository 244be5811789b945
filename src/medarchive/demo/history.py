"""One synthetic patient's life in the hospital: who they are, what they have, when they came.

The generator works in two steps. It plans first: this module draws the demographics, the
chronic diseases with their onsets, allergies and an optional death, then ``visits`` and
``events`` lay out every encounter of the record window with the diagnoses made, drugs ordered,
tests and procedures done at each. ``clinical`` then renders the plan as FHIR resources, with
measured values from ``physiology``. Planning first keeps the clinical story coherent: a drug is
ordered at the visit that diagnosed its indication, an exacerbation only happens to a patient
with the disease, and nothing happens before birth or after death.
"""

from __future__ import annotations

import math
import random

from medarchive.demo.codes import ALLERGENS
from medarchive.demo.conditions import CHRONIC, age_band
from medarchive.demo.plan import YEAR, Condition, Plan, sex_factor
from medarchive.demo.visits import lay_out_visits

_AGE_WEIGHTS = ((0, 5, 6), (5, 18, 10), (18, 35, 17), (35, 50, 18), (50, 65, 20), (65, 80, 19),
                (80, 98, 10))


def plan_patient(index: int, rng: random.Random, window_start: int, window_end: int) -> Plan:
    """Plan one patient whose records lie within [window_start, window_end]."""
    plan = Plan(index, rng)
    _demographics(plan, window_end)
    _chronic_conditions(plan, window_end)
    _mortality(plan, window_start, window_end)
    plan.rec_start = max(window_start, plan.birth)
    plan.rec_end = min(window_end, plan.death) if plan.death is not None else window_end
    _allergies(plan)
    lay_out_visits(plan)
    return plan


# --- who the patient is --------------------------------------------------------------------

def _demographics(plan: Plan, window_end: int) -> None:
    rng = plan.rng
    draw = rng.random() * sum(w for _, _, w in _AGE_WEIGHTS)
    band = 0
    while band < len(_AGE_WEIGHTS) - 1 and draw >= _AGE_WEIGHTS[band][2]:
        draw -= _AGE_WEIGHTS[band][2]
        band += 1
    low, high, _ = _AGE_WEIGHTS[band]
    age = low + rng.random() * (high - low)
    plan.birth = window_end - int(age * YEAR)
    plan.female = rng.random() < 0.51
    plan.chinese = rng.random() < 0.25
    smoke = rng.random()
    plan.smoker = "never" if age < 16 else (
        "current" if smoke < 0.14 else "former" if smoke < 0.14 + min(0.35, age / 200) else "never")
    if plan.chinese:
        mean_h = 159.0 if plan.female else 171.0
        bmi = rng.gauss(23.6, 3.2)
    else:
        mean_h = 163.0 if plan.female else 176.0
        bmi = rng.gauss(27.0, 4.8)
    plan.height = rng.gauss(mean_h, 6.0)
    plan.bmi = min(48.0, max(17.0, bmi))
    plan.bmi_slope = rng.gauss(0.0, 0.25)
    plan.offsets = {name: rng.gauss(0.0, 1.0) for name in _OFFSETS}


_OFFSETS = ("sbp", "dbp", "hr", "ldl", "hdl", "tg", "egfr", "hgb", "a1c", "tsh", "wbc", "plt",
            "kid_bmi")


def _chronic_conditions(plan: Plan, window_end: int) -> None:
    rng = plan.rng
    age_end = plan.age(window_end)
    band = age_band(age_end)
    adult_obese = plan.bmi >= 30.0 and age_end >= 18
    flags = {"smoker": plan.smoker != "never", "obese": adult_obese}
    for rule in CHRONIC:
        if age_end < rule.earliest:
            continue
        p = rule.prevalence[band] * sex_factor(rule.female_ratio, plan.female)
        for risk, factor in rule.risks:
            # the tables give population prevalence, risk factors included: rescale so the
            # mean stays put (assuming about a quarter of people carry each risk)
            p /= 1.0 + (factor - 1.0) * 0.25
            if flags.get(risk) or risk in plan.chronic:
                p *= factor
        if rng.random() >= min(0.9, p):
            continue
        earliest = float(rule.earliest)
        if rule.recent is not None:
            earliest = max(earliest, age_end - rule.recent)
        onset_age = earliest + (age_end - earliest) * math.sqrt(rng.random())
        onset = plan.birth + int(onset_age * YEAR)
        plan.chronic[rule.key] = Condition(rule.key, min(onset, window_end), True)
    if adult_obese:
        onset_age = 18 + (age_end - 18) * rng.random()
        plan.chronic["obesity"] = Condition("obesity", plan.birth + int(onset_age * YEAR), True)


_BURDEN = (("heart-failure", 2.2), ("copd", 1.6), ("ckd", 1.4), ("alzheimers", 2.2),
           ("diabetes", 1.2), ("chd", 1.3))


def _mortality(plan: Plan, window_start: int, window_end: int) -> None:
    rng = plan.rng
    year_start = max(window_start, plan.birth)
    while year_start < window_end:
        age = plan.age(year_start)
        q = 0.00002 * math.exp(0.092 * age) if age >= 1 else 0.004
        for key, factor in _BURDEN:
            if plan.has(key, year_start):
                q *= factor
        if rng.random() < min(0.5, q):
            day = year_start + int(rng.random() * min(365, window_end - year_start))
            plan.death = max(day, plan.birth + 1)
            for key in [k for k, c in plan.chronic.items() if c.onset >= plan.death]:
                del plan.chronic[key]
            return
        year_start += 365


def _allergies(plan: Plan) -> None:
    rng = plan.rng
    count = 0 if rng.random() < 0.72 else 1 if rng.random() < 0.75 else 2
    total = sum(a.weight for a in ALLERGENS)
    chosen: set[str] = set()
    for _ in range(count):
        draw = rng.random() * total
        for allergen in ALLERGENS:
            draw -= allergen.weight
            if draw < 0:
                break
        if allergen.key in chosen:
            continue
        chosen.add(allergen.key)
        young = allergen.category == "food" or allergen.key in ("grass-pollen", "dust-mite")
        onset_age = rng.random() * (min(plan.age(plan.rec_end), 8.0) if young
                                    else plan.age(plan.rec_end))
        plan.allergies.append((allergen, plan.birth + int(onset_age * YEAR), None))
        plan.avoid.update(allergen.avoid)


