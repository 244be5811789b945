"""The plan of one synthetic patient: diagnoses, medication courses and visits, before rendering.

The generator first decides what happens to a patient (``history``, ``visits``, ``events``)
and only then writes FHIR resources (``clinical``). This module holds the shared vocabulary of
that plan and the few verbs every planner uses: open a visit, chart a diagnosis, order a drug.
Days are proleptic ordinals (``date.toordinal``); times are minutes after midnight.
"""

from __future__ import annotations

import random

from medarchive.demo.codes import Allergen
from medarchive.demo.drugs import ALTERNATIVE, PEDIATRIC
from medarchive.demo.hospital import CLINICIANS, DEPARTMENTS

YEAR = 365.25
_DEPT_INDEX = {d.key: i for i, d in enumerate(DEPARTMENTS)}


class Condition:
    """A diagnosis in the plan: when it began, when it was charted, whether it resolved."""

    __slots__ = ("abated", "chronic", "key", "onset", "recorded", "status", "uid", "visit")

    def __init__(self, key: str, onset: int, chronic: bool) -> None:
        self.key = key
        self.onset = onset
        self.chronic = chronic
        self.recorded: int | None = None
        self.abated: int | None = None
        self.status = "active"
        self.uid = ""
        self.visit: Visit | None = None


class Course:
    """A medication order: the drug, its indication, when it starts and (maybe) ends."""

    __slots__ = ("days", "drug", "end", "reason", "since", "start", "uid", "visit")

    def __init__(self, drug: str, start: int, days: int | None, reason: Condition | None) -> None:
        self.drug = drug
        self.start = start
        self.since = start  # when the patient really began taking it (earlier for home drugs
        # first charted at the start of the record)
        self.days = days
        self.end: int | None = start + days if days else None
        self.reason = reason
        self.uid = ""
        self.visit: Visit | None = None


class Visit:
    """One encounter and everything that happened in it."""

    __slots__ = ("clinician", "cls", "day", "department", "diagnoses", "disposition",
                 "end_minute", "event", "fever", "icu", "kind", "labs", "late_labs", "minute",
                 "orders", "procedures", "reasons", "smoking", "stay", "triage", "uid",
                 "vaccines", "vitals", "ward")

    def __init__(self, day: int, kind: str, cls: str, department: str) -> None:
        self.day = day
        self.kind = kind  # well-child, checkup, diagnosis, follow-up, acute, vaccination, admission
        self.cls = cls  # AMB, EMER, IMP
        self.department = department
        self.minute = 0
        self.end_minute = 0  # minutes after midnight of the last day (day + stay)
        self.clinician = 0
        self.triage = 0  # the emergency physician who saw an admitted patient first
        self.stay = 0  # nights in hospital (inpatient only)
        self.icu = 0  # of which nights in intensive care
        self.ward = ""
        self.event = ""  # the acute problem driving physiology at this visit
        self.fever = 0.0
        self.disposition = "home"
        self.vitals = ""  # which vital-sign set is taken
        self.reasons: list[Condition] = []
        self.diagnoses: list[Condition] = []
        self.orders: list[Course] = []
        self.labs: list[str] = []
        self.late_labs: list[str] = []  # repeated before discharge
        self.procedures: list[str] = []
        self.vaccines: list[str] = []
        self.smoking = False
        self.uid = ""


class Plan:
    """Everything decided about one patient before any resource is written."""

    __slots__ = ("allergies", "avoid", "birth", "bmi", "bmi_slope", "chinese", "chronic",
                 "courses", "death", "episodes", "female", "height", "index", "offsets",
                 "rec_end", "rec_start", "rng", "smoker", "visits")

    def __init__(self, index: int, rng: random.Random) -> None:
        self.index = index
        self.rng = rng
        self.birth = 0
        self.female = False
        self.chinese = False
        self.smoker = "never"
        self.height = 170.0  # adult height, cm
        self.bmi = 25.0  # adult BMI at the start of the record
        self.bmi_slope = 0.0  # BMI change per year
        self.rec_start = 0
        self.rec_end = 0
        self.chronic: dict[str, Condition] = {}
        self.episodes: list[Condition] = []
        self.courses: list[Course] = []
        self.visits: list[Visit] = []
        # (allergen, onset day, visit that charted it: set once visits are laid out)
        self.allergies: list[tuple[Allergen, int, Visit | None]] = []
        self.avoid: set[str] = set()
        self.death: int | None = None
        self.offsets: dict[str, float] = {}

    def age(self, day: int) -> float:
        return (day - self.birth) / YEAR

    def has(self, key: str, day: int) -> bool:
        condition = self.chronic.get(key)
        return condition is not None and condition.onset <= day and (
            condition.abated is None or condition.abated > day)

    def on(self, drug: str, day: int) -> float:
        """Days the patient has been taking ``drug`` on ``day`` (0.0 when not taking it)."""
        for course in self.courses:
            if course.drug == drug and course.since <= day and (course.end is None
                                                                or course.end > day):
                return float(day - course.since) + 1.0
        return 0.0


def sex_factor(female_ratio: float, female: bool) -> float:
    """Risk multiplier for one sex, given the female-to-male risk ratio (mean stays 1)."""
    return (2.0 * female_ratio if female else 2.0) / (1.0 + female_ratio)


def primary_department(plan: Plan, day: int) -> str:
    return "pediatrics" if plan.age(day) < 18 else "family-medicine"


def new_visit(plan: Plan, day: int, kind: str, cls: str, department: str) -> Visit:
    """Open a visit on ``day``: clinic hours for ambulatory care, any hour for emergencies."""
    visit = Visit(day, kind, cls, department)
    rng = plan.rng
    if cls == "AMB":
        visit.minute = 8 * 60 + int(rng.random() * 18) * 30
        visit.end_minute = visit.minute + (15 if kind == "vaccination" else 30)
    else:
        visit.minute = int(rng.random() * 1200)
        visit.end_minute = min(1439, visit.minute + 120 + int(rng.random() * 120))
    visit.clinician = clinician(plan, department, cls != "AMB")
    plan.visits.append(visit)
    return visit


def clinician(plan: Plan, department: str, on_shift: bool) -> int:
    """A patient sees the same doctor of a department each time, except on call."""
    numbers = CLINICIANS[department]
    if on_shift:
        return numbers[int(plan.rng.random() * len(numbers))]
    return numbers[(plan.index * 7 + _DEPT_INDEX[department]) % len(numbers)]


def diagnose(plan: Plan, visit: Visit, key: str, onset: int, resolves: int | None) -> Condition:
    """Chart a new acute diagnosis at ``visit``; it resolves ``resolves`` days after onset."""
    condition = Condition(key, max(onset, plan.birth), False)
    condition.recorded = visit.day
    condition.visit = visit
    if resolves is not None and condition.onset + resolves <= plan.rec_end:
        condition.abated = condition.onset + resolves
        condition.status = "resolved"
    plan.episodes.append(condition)
    visit.diagnoses.append(condition)
    visit.reasons.append(condition)
    return condition


def order(plan: Plan, visit: Visit, drug: str, days: int | None,
          reason: Condition | None, start: int | None = None) -> Course | None:
    """Order ``drug`` at ``visit`` unless an allergy forbids it or it is already running; young
    children get the child's form of the drug (or none)."""
    day = visit.day if start is None else start
    if plan.age(day) < 12:
        drug = PEDIATRIC.get(drug, drug)
        if not drug or (drug == "acetaminophen-child" and plan.age(day) < 2):
            return None
    if drug in plan.avoid:
        drug = ALTERNATIVE.get(drug, "")
        if not drug or drug in plan.avoid:
            return None
    if plan.on(drug, day):
        return None
    course = Course(drug, day, days, reason)
    course.visit = visit
    plan.courses.append(course)
    visit.orders.append(course)
    return course


def in_hospital(plan: Plan, day: int) -> bool:
    return any(v.day <= day <= v.day + v.stay for v in plan.visits if v.cls == "IMP")


def free_day(plan: Plan, day: int) -> int:
    """The first day on or after ``day`` the patient is not lying in hospital."""
    moved = True
    while moved:
        moved = False
        for visit in plan.visits:
            if visit.cls == "IMP" and visit.day <= day <= visit.day + visit.stay:
                day = visit.day + visit.stay + 7
                moved = True
    return day
