"""The outpatient side of a patient's record: check-ups, vaccinations, acute illnesses, and
the charting and follow-up of chronic diseases.

Visits are scheduled the way a hospital sees people: children at the well-child ages of the
immunization schedule, adults at yearly check-ups more often as they age, everyone at a flu shot
in autumn, each chronic disease at a diagnosis visit (or at the first visit of the record when
it began earlier) and then at follow-ups whose frequency depends on the disease, where treatment
is escalated or stopped. Emergency admissions come from ``events`` and push outpatient visits
out of the days the patient lies in hospital.
"""

from __future__ import annotations

from datetime import date

from medarchive.demo.codes import CHILD_SCHEDULE, Allergen
from medarchive.demo.conditions import ACUTE, CHRONIC, Chronic, age_band
from medarchive.demo.events import plan_events
from medarchive.demo.plan import (
    Condition,
    Plan,
    Visit,
    diagnose,
    free_day,
    in_hospital,
    new_visit,
    order,
    primary_department,
    sex_factor,
)

_CHRONIC_BY_KEY = {c.key: c for c in CHRONIC}
_ANTIHYPERTENSIVES = ("lisinopril", "losartan", "amlodipine", "hctz", "metoprolol")


def lay_out_visits(plan: Plan) -> None:
    """Schedule every visit of the record window and what happens at each."""
    _routine_visits(plan)
    _flu_and_covid(plan)
    _acute_episodes(plan)
    plan_events(plan)
    _drop_overlaps(plan)
    _chart_chronic(plan)
    _follow_ups(plan)
    plan.visits.sort(key=lambda v: (v.day, v.minute))
    adult = next((v for v in plan.visits if v.kind != "vaccination" and plan.age(v.day) >= 18),
                 None)
    if adult is not None:
        adult.smoking = True  # smoking status is asked once, at the first adult visit
    _chart_allergies(plan)


def _chart_allergies(plan: Plan) -> None:
    """Each allergy is charted at the first visit after its onset; anaphylaxis risks get an
    epinephrine auto-injector."""
    charted: list[tuple[Allergen, int, Visit | None]] = []
    for allergen, onset, _ in plan.allergies:
        visit = next((v for v in plan.visits if v.day >= onset and v.kind != "vaccination"), None)
        if visit is None:
            continue
        charted.append((allergen, onset, visit))
        if allergen.high_risk:
            order(plan, visit, "epinephrine", None, None)
    plan.allergies = charted


def _routine_visits(plan: Plan) -> None:
    rng = plan.rng
    start, end = plan.rec_start, plan.rec_end
    scheduled: set[int] = set()
    for months, vaccines in CHILD_SCHEDULE:
        day = plan.birth + int(months * 30.44) + (3 if months == 0 else int(rng.random() * 10))
        if start <= day <= end:
            visit = new_visit(plan, day, "well-child", "AMB", "pediatrics")
            visit.vitals = "child"
            visit.vaccines.extend(vaccines)
            scheduled.add(int(plan.age(day)))
    year = start
    while year < end:
        age = plan.age(year)
        p = 0.6 if age < 18 else 0.35 if age < 50 else 0.5 if age < 65 else 0.7
        day = year + int(rng.random() * 365)
        if day <= end and rng.random() < p and int(plan.age(day)) not in scheduled:
            kind = "well-child" if plan.age(day) < 18 else "checkup"
            visit = new_visit(plan, day, kind, "AMB", primary_department(plan, day))
            visit.vitals = "child" if kind == "well-child" else "clinic"
            _checkup_orders(plan, visit)
        year += 365


def _checkup_orders(plan: Plan, visit: Visit) -> None:
    rng = plan.rng
    age = plan.age(visit.day)
    if age < 18:
        return
    if age >= 40 and rng.random() < 0.35:
        visit.labs.append("lipid")
    if rng.random() < 0.2:
        visit.labs.append("cmp")
    if rng.random() < 0.15:
        visit.labs.append("cbc")
    if plan.bmi >= 30 and not plan.has("diabetes", visit.day) and rng.random() < 0.3:
        visit.labs.append("a1c")
    if rng.random() < 0.12:
        visit.vaccines.append("td")
    if age >= 50 and rng.random() < 0.15:
        visit.vaccines.append("zoster")
    if age >= 65 and rng.random() < 0.2:
        visit.vaccines.append("ppsv23")
    month = date.fromordinal(visit.day).month
    if month >= 9 and rng.random() < 0.6:
        visit.vaccines.append("flu")


def _flu_and_covid(plan: Plan) -> None:
    rng = plan.rng
    first = date.fromordinal(plan.rec_start).year
    for year in range(first, date.fromordinal(plan.rec_end).year + 1):
        day = date(year, 9, 15).toordinal() + int(rng.random() * 90)
        if not plan.rec_start <= day <= plan.rec_end:
            continue
        age = plan.age(day)
        p = 0.0 if age < 0.5 else 0.5 if age < 18 else 0.3 if age < 50 else 0.45 if age < 65 \
            else 0.65
        season = date(year, 8, 1).toordinal()
        if rng.random() < p and not any(v.day >= season and "flu" in v.vaccines
                                        for v in plan.visits):
            _vaccinate(plan, day, "flu")
    covid = date(2021, 3, 1).toordinal() + int(rng.random() * 180)
    if plan.age(covid) >= 12 and rng.random() < 0.7:
        for day in (covid, covid + 21):
            if plan.rec_start <= day <= plan.rec_end:
                _vaccinate(plan, day, "covid")
        booster = date(2021, 11, 1).toordinal() + int(rng.random() * 200)
        if rng.random() < 0.5 and plan.rec_start <= booster <= plan.rec_end:
            _vaccinate(plan, booster, "covid")


def _vaccinate(plan: Plan, day: int, vaccine: str) -> None:
    new_visit(plan, day, "vaccination", "AMB", primary_department(plan, day)).vaccines.append(
        vaccine)


def _acute_episodes(plan: Plan) -> None:
    rng = plan.rng
    year = plan.rec_start
    while year < plan.rec_end:
        band = age_band(plan.age(year))
        for rule in ACUTE:
            rate = rule.rate[band] * sex_factor(rule.female_ratio, plan.female)
            if rng.random() >= rate:
                continue
            day = year + int(rng.random() * 365)
            if day > plan.rec_end or (rule.since and day < date.fromisoformat(
                    rule.since).toordinal()):
                continue
            emergency = rng.random() < rule.emergency
            department = "emergency" if emergency else primary_department(plan, day)
            visit = new_visit(plan, day, "acute", "EMER" if emergency else "AMB", department)
            visit.vitals = "ed" if emergency else "sick"
            visit.event = rule.key
            visit.fever = rule.fever * (0.6 + 0.6 * rng.random()) if rule.fever else 0.0
            condition = diagnose(plan, visit, rule.key, day - int(rng.random() * 3),
                                 resolves=rule.days)
            visit.labs.extend(rule.labs)
            visit.procedures.extend(rule.procedures)
            for drug in rule.drugs:
                order(plan, visit, drug, rule.course, condition)
        year += 365


def _chart_chronic(plan: Plan) -> None:
    """Chart each chronic disease: at a diagnosis visit, or at the first visit of the record."""
    rng = plan.rng
    plan.visits.sort(key=lambda v: (v.day, v.minute))
    prior = [c for c in plan.chronic.values() if c.onset < plan.rec_start and c.recorded is None]
    if prior:
        first = next((v for v in plan.visits if v.kind != "vaccination"), None)
        if first is None:
            day = plan.rec_start + int(rng.random() * min(365, plan.rec_end - plan.rec_start + 1))
            first = new_visit(plan, day, "checkup", "AMB", primary_department(plan, day))
            first.vitals = "clinic"
        for condition in sorted(prior, key=lambda c: c.key):
            _start_care(plan, first, condition)
    for condition in sorted(plan.chronic.values(), key=lambda c: (c.onset, c.key)):
        if condition.recorded is not None:
            continue
        rule = _CHRONIC_BY_KEY.get(condition.key)
        day = free_day(plan, condition.onset + int(rng.random() * 14))
        if day > plan.rec_end:
            del plan.chronic[condition.key]
            continue
        department = rule.department if rule else "family-medicine"
        if plan.age(day) < 18 or (department in ("psychiatry", "geriatrics") and rng.random() < .5):
            department = primary_department(plan, day)
        visit = new_visit(plan, day, "diagnosis", "AMB", department)
        visit.vitals = "clinic"
        _start_care(plan, visit, condition)
        if rule:
            visit.labs.extend(p for p in rule.labs if p not in visit.labs)
        visit.procedures.extend(_WORKUP.get(condition.key, ()))


_WORKUP = {"heart-failure": ("echo", "chest-xray"), "atrial-fibrillation": ("ecg",),
           "chd": ("ecg",), "copd": ("spirometry",), "asthma": ("spirometry",),
           "osteoporosis": ("bone-density",), "ckd": ("abdominal-us",)}


def _start_care(plan: Plan, visit: Visit, condition: Condition) -> None:
    condition.recorded = visit.day
    condition.visit = visit
    visit.diagnoses.append(condition)
    visit.reasons.append(condition)
    rule = _CHRONIC_BY_KEY.get(condition.key)
    if rule is None:
        return
    for drug in _maintenance(plan, rule, visit.day):
        course = order(plan, visit, drug, None, condition)
        if course is not None and condition.onset < visit.day - 60:
            course.since = condition.onset + 30  # a home drug, taken since long before


def _maintenance(plan: Plan, rule: Chronic, day: int) -> tuple[str, ...]:
    rng = plan.rng
    drugs = rule.drugs
    if rule.key == "hypertension" and rng.random() < 0.2:
        drugs = ("losartan",)
    elif rule.key == "atrial-fibrillation" and rng.random() < 0.25:
        drugs = ("warfarin", "metoprolol")
    elif rule.key == "depression" and rng.random() < 0.35:
        drugs = ("fluoxetine",)
    elif rule.key == "heart-failure" and not any(plan.on(d, day) for d in ("lisinopril",
                                                                           "losartan")):
        drugs = (*drugs, "lisinopril")
    elif rule.key == "asthma" and plan.age(day) < 12:
        drugs = ("albuterol",)
    if plan.age(day) < 18:
        drugs = tuple(d for d in drugs if d in ("albuterol", "fluticasone", "loratadine",
                                                "ferrous-sulfate", "levothyroxine",
                                                "sertraline", "fluoxetine"))
    return drugs


def _follow_ups(plan: Plan) -> None:
    rng = plan.rng
    charted = sorted((c for c in plan.chronic.values() if c.recorded is not None),
                     key=lambda c: c.recorded or 0)
    if not charted:
        return
    day = (charted[0].recorded or 0) + 60 + int(rng.random() * 60)
    while day <= plan.rec_end:
        active = [c for c in charted if c.recorded is not None and c.recorded < day
                  and c.abated is None and c.key in _CHRONIC_BY_KEY
                  and _CHRONIC_BY_KEY[c.key].visits]
        if not active:
            day += 180
            continue
        if in_hospital(plan, day):
            day = free_day(plan, day)
            continue
        lead = max(active, key=lambda c: (_CHRONIC_BY_KEY[c.key].visits, c.key))
        per_year = min(4, _CHRONIC_BY_KEY[lead.key].visits + (len(active) > 3))
        department = _CHRONIC_BY_KEY[lead.key].department
        if plan.age(day) < 18 or rng.random() < 0.4:
            department = primary_department(plan, day)
        visit = new_visit(plan, day, "follow-up", "AMB", department)
        visit.vitals = "follow-up"
        visit.reasons.extend(active)
        for condition in active:
            for panel in _CHRONIC_BY_KEY[condition.key].labs:
                if panel not in visit.labs and rng.random() < 0.4:
                    visit.labs.append(panel)
        _adjust_treatment(plan, visit, active)
        day += int(365 / per_year * (0.75 + 0.5 * rng.random()))


def _adjust_treatment(plan: Plan, visit: Visit, active: list[Condition]) -> None:
    rng = plan.rng
    day = visit.day
    for condition in active:
        if condition.key == "hypertension":
            treated = sum(1 for d in _ANTIHYPERTENSIVES if plan.on(d, day))
            if treated and treated < 3 and rng.random() < 0.12:
                order(plan, visit, "amlodipine" if not plan.on("amlodipine", day) else "hctz",
                      None, condition)
        elif condition.key == "diabetes":
            since = plan.on("metformin", day)
            if since > 700 and not plan.on("insulin", day) and rng.random() < 0.08:
                order(plan, visit, "insulin", None, condition)
        rule = _CHRONIC_BY_KEY[condition.key]
        if rule.remits and day - (condition.recorded or day) > rule.remits[2] and \
                rng.random() < rule.remits[1]:
            condition.status = rule.remits[0]
            condition.abated = day
            for course in plan.courses:
                if course.reason is condition and course.end is None:
                    course.end = day


def _drop_overlaps(plan: Plan) -> None:
    """Outpatient visits cannot happen while the patient lies in hospital: drop them, with
    whatever they diagnosed and ordered."""
    if not any(v.cls == "IMP" for v in plan.visits):
        return
    dropped = {id(v) for v in plan.visits if v.cls != "IMP" and in_hospital(plan, v.day)}
    if not dropped:
        return
    plan.visits = [v for v in plan.visits if id(v) not in dropped]
    plan.episodes = [c for c in plan.episodes if id(c.visit) not in dropped]
    plan.courses = [c for c in plan.courses if id(c.visit) not in dropped]
