"""What the demo patients' bodies measure: vital signs and laboratory values over time.

Values follow the patient's story rather than being drawn independently: blood pressure rises
with age and hypertension and falls as antihypertensives take effect; HbA1c is high when
diabetes is diagnosed and drifts toward target on metformin; eGFR declines year by year in
chronic kidney disease and creatinine is derived from it (MDRD); hemoglobin recovers on iron;
LDL falls on a statin; fever, tachycardia, hypoxia, leukocytosis and CRP peak on admission for
pneumonia or sepsis and settle day by day. ``severity`` (1 on presentation, 0 once recovered)
carries an acute problem's weight into every value.
"""

from __future__ import annotations

import math

from medarchive.demo.plan import Plan, Visit

# Reference heights (cm) at ages in years, for boys and girls; scaled to the adult height.
_GROWTH_AGES = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 14.0, 18.0)
_GROWTH = {False: (50.0, 67.0, 76.0, 88.0, 110.0, 139.0, 163.0, 176.0),
           True: (49.0, 65.0, 74.0, 86.0, 109.0, 138.0, 160.0, 163.0)}
_CHILD_BMI = (13.5, 17.0, 17.0, 16.5, 15.5, 17.0, 19.5, 21.5)
# Resting heart rate and breathing rate by the same ages.
_CHILD_HR = (140.0, 130.0, 120.0, 110.0, 95.0, 85.0, 78.0, 72.0)
_CHILD_RR = (40.0, 34.0, 30.0, 26.0, 22.0, 19.0, 17.0, 15.0)

_BACTERIAL = {"pneumonia": 1.0, "sepsis": 1.6, "uti": 0.5, "appendicitis": 0.8,
              "copd-exacerbation": 0.4, "strep-throat": 0.6, "sinusitis": 0.3,
              "otitis-media": 0.3}
# Per-event effects at full severity: heart rate, respiratory rate, SpO2, systolic BP.
_ACUTE = {
    "pneumonia": (15, 8, -6, 0), "sepsis": (30, 9, -5, -28), "hf-exacerbation": (15, 7, -6, 10),
    "copd-exacerbation": (12, 9, -8, 0), "asthma-exacerbation": (18, 10, -5, 0),
    "mi": (15, 3, -2, 10), "stroke": (5, 1, -1, 30), "hip-fracture": (10, 2, 0, 10),
    "appendicitis": (12, 3, 0, 0), "covid-19": (8, 4, -3, 0), "bronchitis": (5, 3, -1, 0),
}


def _interpolate(x: float, xs: tuple[float, ...], ys: tuple[float, ...]) -> float:
    if x <= xs[0]:
        return ys[0]
    for i in range(1, len(xs)):
        if x <= xs[i]:
            frac = (x - xs[i - 1]) / (xs[i] - xs[i - 1])
            return ys[i - 1] + frac * (ys[i] - ys[i - 1])
    return ys[-1]


def height(plan: Plan, age: float) -> float:
    if age >= 18:
        return plan.height - max(0.0, age - 60.0) * 0.12
    return _interpolate(age, _GROWTH_AGES, _GROWTH[plan.female]) * plan.height / (
        _GROWTH[plan.female][-1])


def bmi(plan: Plan, age: float, day: int) -> float:
    if age >= 18:
        years = (day - plan.rec_start) / 365.25
        return max(16.0, plan.bmi + plan.bmi_slope * years)
    return _interpolate(age, _GROWTH_AGES, _CHILD_BMI) + plan.offsets["kid_bmi"] * 1.2


def vital_signs(plan: Plan, visit: Visit, day: int, severity: float) -> dict[str, float]:
    """Every vital sign of the patient at ``day`` (the caller picks which were measured)."""
    gauss = plan.rng.gauss
    offsets = plan.offsets
    age = plan.age(day)
    effects = _ACUTE.get(visit.event, (0, 0, 0, 0))
    if visit.fever and not effects[0]:
        effects = (int(9 * visit.fever), 2, 0, 0)
    hr_up, rr_up, spo2_down, sbp_up = (e * severity for e in effects)
    fever = visit.fever * severity
    if age < 18:
        hr = _interpolate(age, _GROWTH_AGES, _CHILD_HR) + 6 * offsets["hr"]
        rr = _interpolate(age, _GROWTH_AGES, _CHILD_RR)
        sbp = 90.0 + 1.3 * age + 5 * offsets["sbp"]
        dbp = 55.0 + 0.8 * age + 4 * offsets["dbp"]
    else:
        hr = 72.0 + 7 * offsets["hr"]
        rr = 15.0
        sbp = 108.0 + 0.45 * (age - 18) - (4 if plan.female else 0) + 7 * offsets["sbp"]
        dbp = 68.0 + 0.25 * min(age - 18, 40) - 0.2 * max(0.0, age - 60) + 5 * offsets["dbp"]
        if plan.has("hypertension", day):
            sbp += 24
            dbp += 12
            for drug in ("lisinopril", "losartan", "amlodipine", "hctz", "metoprolol"):
                taken = plan.on(drug, day)
                if taken:
                    effect = min(1.0, taken / 60.0)
                    sbp -= 9 * effect
                    dbp -= 5 * effect
    if plan.has("atrial-fibrillation", day):
        hr += 12 + gauss(0, 8)
    if plan.on("metoprolol", day):
        hr -= 8
    spo2 = 98.0 + 0.6 * gauss(0, 1)
    if plan.has("copd", day):
        spo2 -= 3
        rr += 3
    weight_extra = 3.0 * severity if visit.event == "hf-exacerbation" else 0.0
    hr += hr_up + 9 * fever + gauss(0, 4)
    rr += rr_up + gauss(0, 1.2)
    sbp += sbp_up + gauss(0, 6)
    dbp += sbp_up * 0.4 + gauss(0, 4)
    tall = height(plan, age)
    mass = bmi(plan, age, day) * (tall / 100.0) ** 2 + weight_extra
    return {
        "heart-rate": min(180.0, max(40.0, hr)),
        "respiratory-rate": min(45.0, max(8.0, rr)),
        "spo2": min(100.0, max(80.0, spo2 + spo2_down)),
        "temperature": 36.8 + fever + gauss(0, 0.2),
        "systolic": min(220.0, max(75.0, sbp)),
        "diastolic": min(125.0, max(40.0, min(dbp, sbp - 25))),
        "height": tall,
        "weight": mass,
        "bmi": mass / (tall / 100.0) ** 2,
    }


def _decay(start: float, target: float, days: float, scale: float) -> float:
    return target + (start - target) * math.exp(-days / scale)


def lab_values(plan: Plan, visit: Visit, day: int, severity: float) -> dict[str, float]:
    """Every laboratory value of the patient at ``day``; panels pick what they report."""
    gauss = plan.rng.gauss
    off = plan.offsets
    age = plan.age(day)
    event = visit.event
    s = severity
    bacterial = _BACTERIAL.get(event, 0.0) * s
    has = plan.has
    on = plan.on
    # glucose control
    if has("diabetes", day):
        untreated = min(12.0, max(6.9, 8.5 + 0.8 * off["a1c"]))
        target = 7.0 + 0.4 * abs(off["a1c"]) - (0.6 if on("insulin", day) else 0.0)
        a1c = _decay(untreated, target, on("metformin", day), 90.0) if on("metformin", day) \
            else untreated
    else:
        a1c = min(6.3, max(4.6, 5.3 + 0.25 * off["a1c"] + (0.3 if plan.bmi >= 30 else 0.0)))
    glucose = 28.7 * a1c - 62.0 + gauss(0, 10) + 40 * s * (event in ("sepsis", "mi"))
    # kidney
    if age >= 18:
        if has("ckd", day):
            onset = plan.chronic["ckd"].onset
            egfr = 52 + 5 * off["egfr"] - 1.5 * (day - onset) / 365.25
            egfr = min(59.0, max(31.0, egfr))
        else:
            egfr = min(125.0, max(62.0, 110 - 0.9 * max(0.0, age - 25) + 8 * off["egfr"]))
        egfr *= 1.0 - 0.3 * s * (event in ("sepsis", "hf-exacerbation", "gastroenteritis"))
        sex = 0.742 if plan.female else 1.0
        creatinine = (egfr / (175.0 * age ** -0.203 * sex)) ** (-1 / 1.154)
    else:
        egfr = 0.0
        creatinine = 0.25 + 0.035 * age
    ckd = has("ckd", day)
    # blood count
    hgb = (12.3 if age < 14 else 13.5 if plan.female else 15.1) + 0.8 * off["hgb"]
    if has("anemia", day):
        iron = on("ferrous-sulfate", day)
        hgb -= _decay(3.0, 0.5, iron, 60.0) if iron else 3.0
    hgb -= 1.2 * ckd + s * (event == "sepsis")
    if event == "hip-fracture" and s > 0:  # bleeding from the fracture, then from surgery
        hgb -= 1.0 * s + 2.5 * (1.0 - s)
    hgb = min(19.0, max(6.5, hgb + gauss(0, 0.3)))
    wbc = 7.0 + 1.4 * off["wbc"] + gauss(0, 0.6) + 7 * bacterial + 2.5 * bool(
        on("prednisone", day)) - 0.8 * s * (event in ("covid-19", "viral-uri"))
    # lipids
    ldl = 100 + 0.5 * min(age, 70.0) + 22 * off["ldl"] + 55 * has("hyperlipidemia", day)
    for drug, cut in (("simvastatin", 0.32), ("atorvastatin", 0.48)):
        taken = on(drug, day)
        if taken:
            ldl *= 1 - cut * (1 - math.exp(-taken / 30.0))
    diabetic = has("diabetes", day)
    hdl = (57.0 if plan.female else 46.0) + 9 * off["hdl"] - 5 * diabetic
    tg = 115 + 35 * off["tg"] + 60 * diabetic + 40 * (plan.bmi >= 30)
    # thyroid
    tsh = 1.8 + 0.6 * off["tsh"]
    if has("hypothyroidism", day):
        untreated = min(20.0, max(5.5, 9.0 + 2 * off["tsh"]))
        taken = on("levothyroxine", day)
        tsh = _decay(untreated, 2.2, taken, 45.0) if taken else untreated
    bnp = (40 + 25 * abs(gauss(0, 1))) * (3 if age >= 75 else 1)
    if has("heart-failure", day):
        bnp += 600 + 300 * abs(gauss(0, 1)) + 6000 * s * (event == "hf-exacerbation")
    sodium = 140 + gauss(0, 1.5) - 4 * s * (event in ("hf-exacerbation", "gastroenteritis",
                                                      "sepsis")) - bool(on("furosemide", day))
    potassium = 4.2 + gauss(0, 0.3) + 0.4 * ckd + 0.15 * bool(
        on("lisinopril", day) or on("losartan", day)) + 0.3 * bool(
        on("spironolactone", day)) - 0.35 * bool(on("furosemide", day)) - 0.25 * bool(
        on("hctz", day))
    return {
        "a1c": a1c + gauss(0, 0.15),
        "glucose": max(55.0, glucose),
        "egfr": egfr,
        "creatinine": creatinine * (1 + gauss(0, 0.04)),
        "bun": max(4.0, 12 + 0.05 * age + gauss(0, 3) + 12 * ckd + 10 * s * (
            event in ("hf-exacerbation", "gastroenteritis", "sepsis"))),
        "sodium": sodium,
        "potassium": min(6.4, max(2.9, potassium)),
        "chloride": sodium - 38 + gauss(0, 1.5),
        "co2": 25 + gauss(0, 1.5) + 3 * has("copd", day) - 7 * s * (event == "sepsis"),
        "calcium": 9.4 + gauss(0, 0.3) - 0.3 * ckd,
        "albumin": 4.2 + gauss(0, 0.25) - 0.2 * (age > 70) - 0.9 * s * (event == "sepsis"),
        "alt": max(7.0, 22 + gauss(0, 7)),
        "ast": max(9.0, 22 + gauss(0, 6)),
        "wbc": min(35.0, max(2.5, wbc)),
        "hemoglobin": hgb,
        "hematocrit": hgb * 2.95 + gauss(0, 0.8),
        "rbc": hgb / 3.0 + gauss(0, 0.1),
        "platelets": max(40.0, 250 + 45 * off["plt"] + gauss(0, 15) - 90 * s * (
            event == "sepsis")),
        "ldl": min(260.0, max(40.0, ldl)),
        "hdl": max(22.0, hdl),
        "triglycerides": min(600.0, max(40.0, tg)),
        "cholesterol": ldl + hdl + tg / 5,
        "tsh": max(0.1, tsh + gauss(0, 0.2)),
        "ntprobnp": bnp,
        "troponin": 0.01 + 0.005 * abs(gauss(0, 1)) + (
            8 * s * (0.5 + plan.rng.random()) if event == "mi" else 0.0),
        "crp": max(0.2, 2 + 1.5 * abs(gauss(0, 1)) + 90 * bacterial * (0.6 + plan.rng.random())
                   + 15 * s * (event == "mi")),
        "lactate": max(0.5, 1.1 + gauss(0, 0.3) + 3.2 * s * (event == "sepsis")),
        "uacr": (35 + 40 * abs(gauss(0, 1)) if diabetic else 12 + 6 * abs(gauss(0, 1))) * (
            2 if ckd else 1),
    }
