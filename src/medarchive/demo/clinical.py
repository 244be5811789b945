"""Renders a patient plan as FHIR R4 resources: Patient, Encounter, Condition, MedicationRequest,
Procedure, Immunization and AllergyIntolerance (Observations are in ``observations``).

Each builder writes only elements the R4 StructureDefinitions define, codes from the value sets
the spec binds (required and extensible bindings), and references that resolve within the
patient's bundle (``urn:uuid:``) or to the shared hospital resources (``Type/id``).
"""

from __future__ import annotations

from typing import Any

from medarchive.demo.codes import (
    ADMINISTERING,
    ADMIT_FROM_EMERGENCY,
    ALLERGY_ACTIVE,
    ALLERGY_CONFIRMED,
    ARM_SITE,
    ATTENDER,
    CLINICAL_STATUS,
    CONFIRMED,
    DIAGNOSIS_USE,
    DISCHARGE,
    ENCOUNTER_CLASS,
    ENCOUNTER_DIAGNOSIS,
    ENCOUNTER_TYPE,
    INTRAMUSCULAR,
    PRIMARY_PERFORMER,
    PROBLEM_LIST,
    PROCEDURE,
    REACTION,
    UCUM,
    V3_ROUTE,
    VACCINE,
    Allergen,
    Code,
)
from medarchive.demo.conditions import DISEASES
from medarchive.demo.drugs import DRUGS
from medarchive.demo.hospital import (
    CLINICIANS,
    DEPARTMENT,
    ENCOUNTER_SYSTEM,
    HOSPITAL_ID,
    NAME,
    WARD,
    clinic_id,
    practitioner_id,
)
from medarchive.demo.plan import Condition, Course, Plan, Visit
from medarchive.demo.writer import Writer, day_text, shared, stamp

_ENCOUNTER_TYPE = {"well-child": "well-child", "checkup": "checkup", "diagnosis": "symptom",
                   "follow-up": "follow-up", "acute": "symptom", "vaccination": "vaccination",
                   "admission": "admission"}
_PRIORITY = Code("http://terminology.hl7.org/CodeSystem/v3-ActPriority", "EM", "emergency")
_MED_CATEGORY = "http://terminology.hl7.org/CodeSystem/medicationrequest-category"
_ORAL_VACCINE = Code(V3_ROUTE, "PO", "Swallow, oral")
_SURGERY = {"hip-replacement", "appendectomy", "pci"}
_IMAGING = {"chest-xray", "ct-head", "abdominal-us", "ankle-xray", "clavicle-xray", "arm-xray",
            "bone-density"}


def _practitioner(number: int) -> dict[str, str]:
    return shared("Practitioner", practitioner_id(number))


def visit_period(visit: Visit) -> tuple[str, str]:
    end_day = visit.day + visit.stay
    end_minute = visit.end_minute
    if visit.cls != "IMP" and end_minute <= visit.minute:
        end_minute = visit.minute + 15
    return stamp(visit.day, visit.minute), stamp(end_day, end_minute)


def encounter(w: Writer, plan: Plan, visit: Visit, number: str) -> None:
    """An Encounter (R4 §9.1) with class, type, participants, period, reasons, locations."""
    enc = w.start("Encounter", visit.uid)
    start, end = visit_period(visit)
    enc["identifier"] = [{"use": "official", "system": ENCOUNTER_SYSTEM, "value": number}]
    enc["status"] = "finished"
    enc["class"] = ENCOUNTER_CLASS[visit.cls].coding()
    enc["type"] = [ENCOUNTER_TYPE["emergency" if visit.cls == "EMER" else
                                  _ENCOUNTER_TYPE[visit.kind]].named()]
    if visit.cls != "AMB":
        enc["priority"] = _PRIORITY.concept()
    enc["subject"] = w.subject()
    participants = []
    if visit.triage:
        participants.append({"type": [PRIMARY_PERFORMER.concept()],
                             "period": {"start": start, "end": stamp(visit.day,
                                                                     visit.minute + 180)},
                             "individual": _practitioner(visit.triage)})
    participants.append({"type": [ATTENDER.concept()], "period": {"start": start, "end": end},
                         "individual": _practitioner(visit.clinician)})
    enc["participant"] = participants
    enc["period"] = {"start": start, "end": end}
    if visit.cls == "IMP":
        enc["length"] = {"value": max(visit.stay, 1), "unit": "days", "system": UCUM,
                         "code": "d"}
    else:
        minutes = visit.end_minute - visit.minute if visit.end_minute > visit.minute else 15
        enc["length"] = {"value": minutes, "unit": "minutes", "system": UCUM, "code": "min"}
    reasons = visit.reasons[:4]
    if reasons:
        enc["reasonCode"] = [DISEASES[c.key].concept() for c in reasons]
        enc["reasonReference"] = [w.ref("Condition", c.uid) for c in reasons]
    if visit.diagnoses:
        use = "AD" if visit.cls == "IMP" else "CC" if visit.cls == "EMER" else ""
        diagnoses = []
        for rank, condition in enumerate(visit.diagnoses, start=1):
            item: dict[str, Any] = {"condition": w.ref("Condition", condition.uid)}
            if use:
                item["use"] = DIAGNOSIS_USE[use].concept()
            item["rank"] = rank
            diagnoses.append(item)
        enc["diagnosis"] = diagnoses
    if visit.cls == "IMP":
        enc["hospitalization"] = {"admitSource": ADMIT_FROM_EMERGENCY.concept(),
                                  "dischargeDisposition": DISCHARGE[visit.disposition].concept()}
    enc["location"] = _locations(plan, visit, start, end)
    department = DEPARTMENT[visit.department]
    enc["serviceProvider"] = shared("Organization", department.id, department.name)


def _room(plan: Plan, ward: str) -> tuple[str, str]:
    where = WARD[ward]
    room = where.rooms[int(plan.rng.random() * len(where.rooms))]
    return where.room_id(room), f"{where.name} room {room}"


def _stop(place: tuple[str, str], start: str, end: str) -> dict[str, Any]:
    return {"location": shared("Location", place[0], place[1]), "status": "completed",
            "period": {"start": start, "end": end}}


def _locations(plan: Plan, visit: Visit, start: str, end: str) -> list[dict[str, Any]]:
    if visit.cls == "AMB":
        department = DEPARTMENT[visit.department]
        return [_stop((clinic_id(department.key), f"{department.name} Clinic"), start, end)]
    if visit.cls == "EMER":
        return [_stop(_room(plan, "ed"), start, end)]
    moved = stamp(visit.day, visit.minute + 180)
    stops = [_stop(_room(plan, "ed"), start, moved)]
    if visit.icu:
        transfer = stamp(visit.day + visit.icu, 10 * 60) if visit.icu < visit.stay else end
        stops.append(_stop(_room(plan, "icu"), moved, transfer))
        moved = transfer
    if moved != end:
        stops.append(_stop(_room(plan, visit.ward), moved, end))
    return stops


def condition(w: Writer, plan: Plan, item: Condition) -> None:
    """A Condition (R4 §9.2) with ICD-10 and SNOMED CT codings and its clinical status."""
    visit = item.visit
    assert visit is not None
    res = w.start("Condition", item.uid)
    res["clinicalStatus"] = CLINICAL_STATUS[item.status].concept()
    res["verificationStatus"] = CONFIRMED.concept()
    res["category"] = [(PROBLEM_LIST if item.chronic else ENCOUNTER_DIAGNOSIS).concept()]
    res["code"] = DISEASES[item.key].concept()
    res["subject"] = w.subject()
    res["encounter"] = w.ref("Encounter", visit.uid)
    res["onsetDateTime"] = day_text(item.onset)
    if item.abated is not None:
        res["abatementDateTime"] = day_text(item.abated)
    res["recordedDate"] = stamp(visit.day, visit.minute + 20)
    res["recorder"] = _practitioner(visit.clinician)


def medication_request(w: Writer, plan: Plan, course: Course) -> None:
    """A MedicationRequest (R4 §12.13) with RxNorm code, indication and structured dosage."""
    visit = course.visit
    assert visit is not None
    drug = DRUGS[course.drug]
    res = w.start("MedicationRequest", course.uid)
    res["status"] = _status(plan, course)
    res["intent"] = "order"
    inpatient = visit.cls == "IMP" and course.start == visit.day and course.days is not None
    category = "outpatient" if visit.cls != "IMP" else "inpatient" if inpatient else (
        "discharge" if course.start > visit.day else "community")
    res["category"] = [{"coding": [{"system": _MED_CATEGORY, "code": category,
                                    "display": category.capitalize()}]}]
    res["medicationCodeableConcept"] = drug.code.named()
    res["subject"] = w.subject()
    res["encounter"] = w.ref("Encounter", visit.uid)
    minute = visit.end_minute - 10 if course.start > visit.day else visit.minute + 25
    res["authoredOn"] = stamp(course.start, minute)
    res["requester"] = _practitioner(visit.clinician)
    if course.reason is not None and course.reason.uid:
        res["reasonReference"] = [w.ref("Condition", course.reason.uid)]
    stopped = day_text(course.end) if course.end is not None and course.end <= plan.rec_end \
        else None
    res["dosageInstruction"] = [drug.dosage(course.days, day_text(course.start), stopped)]
    if course.days is None and not inpatient:
        res["dispenseRequest"] = {
            "numberOfRepeatsAllowed": 5,
            "expectedSupplyDuration": {"value": 30, "unit": "days", "system": UCUM, "code": "d"}}


def _status(plan: Plan, course: Course) -> str:
    if course.end is not None and course.end <= plan.rec_end:
        return "completed" if course.days and course.end == course.start + course.days \
            else "stopped"
    return "stopped" if plan.death is not None else "active"


def procedure(w: Writer, plan: Plan, visit: Visit, key: str) -> None:
    """A Procedure (R4 §9.3) performed at the visit, SNOMED CT coded."""
    res = w.start("Procedure", w.uid())
    res["status"] = "completed"
    res["code"] = PROCEDURE[key].named()
    res["subject"] = w.subject()
    res["encounter"] = w.ref("Encounter", visit.uid)
    if key in _SURGERY and visit.stay:
        day, minute, length = visit.day + 1, 9 * 60 + int(plan.rng.random() * 300), 90
    else:
        day, minute, length = visit.day, visit.minute + 40, 20
    res["performedPeriod"] = {"start": stamp(day, minute), "end": stamp(day, minute + length)}
    if key in _IMAGING:  # read by a radiologist, in radiology
        radiologists = CLINICIANS["radiology"]
        reader = radiologists[int(plan.rng.random() * len(radiologists))]
        res["performer"] = [{"actor": _practitioner(reader)}]
        res["location"] = shared("Location", "loc-radiology", "Radiology")
    else:
        res["performer"] = [{"actor": _practitioner(visit.clinician)}]
    if visit.reasons:
        res["reasonReference"] = [w.ref("Condition", visit.reasons[0].uid)]


def immunization(w: Writer, plan: Plan, visit: Visit, key: str) -> None:
    """An Immunization (R4 §9.6) with a CVX vaccine code."""
    res = w.start("Immunization", w.uid())
    res["status"] = "completed"
    res["vaccineCode"] = VACCINE[key].named()
    res["patient"] = w.subject()
    res["encounter"] = w.ref("Encounter", visit.uid)
    res["occurrenceDateTime"] = stamp(visit.day, visit.minute + 10)
    res["primarySource"] = True
    department = DEPARTMENT[visit.department]
    res["location"] = shared("Location", clinic_id(department.key), f"{department.name} Clinic")
    rng = plan.rng
    res["lotNumber"] = f"{'ABCDEFGHJK'[int(rng.random() * 10)]}{int(rng.random() * 90000) + 10000}"
    if key == "rotavirus":
        res["route"] = _ORAL_VACCINE.concept()
        res["doseQuantity"] = {"value": 1, "unit": "mL", "system": UCUM, "code": "mL"}
    else:
        res["site"] = ARM_SITE["LA" if rng.random() < 0.5 else "RA"].concept()
        res["route"] = INTRAMUSCULAR.concept()
        res["doseQuantity"] = {"value": 0.5, "unit": "mL", "system": UCUM, "code": "mL"}
    res["performer"] = [{"function": ADMINISTERING.concept(),
                         "actor": _practitioner(visit.clinician)}]


def allergy(w: Writer, plan: Plan, allergen: Allergen, onset: int, visit: Visit) -> None:
    """An AllergyIntolerance (R4 §9.7) with a SNOMED CT substance code and its reactions."""
    rng = plan.rng
    res = w.start("AllergyIntolerance", w.uid())
    res["clinicalStatus"] = ALLERGY_ACTIVE.concept()
    res["verificationStatus"] = ALLERGY_CONFIRMED.concept()
    res["type"] = allergen.kind
    res["category"] = [allergen.category]
    res["criticality"] = "high" if allergen.high_risk else "low"
    res["code"] = allergen.substance.named()
    res["patient"] = w.subject()
    res["encounter"] = w.ref("Encounter", visit.uid)
    res["onsetDateTime"] = day_text(onset)
    res["recordedDate"] = stamp(visit.day, visit.minute + 15)
    res["recorder"] = _practitioner(visit.clinician)
    count = 1 + int(rng.random() * min(2, len(allergen.reactions)))
    manifestations = allergen.reactions[:count]
    severity = "severe" if "anaphylaxis" in manifestations else (
        "moderate" if rng.random() < 0.4 else "mild")
    res["reaction"] = [{"manifestation": [REACTION[r].concept() for r in manifestations],
                        "severity": severity}]


def organization_ref() -> dict[str, str]:
    return shared("Organization", HOSPITAL_ID, NAME)
