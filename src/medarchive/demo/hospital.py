"""The demo hospital: its organization, departments, wards, rooms, clinicians and their roles.

Patient records point at shared resources (the department that provided a service, the ward a
patient lay in, the attending physician), so these are created once, by PUT at stable ids
(``Organization/dept-cardiology``, ``Location/loc-icu``, ``Practitioner/prac-0007``), and every
patient bundle refers to them by plain ``Type/id``. The ids and the structure do not depend on
the seed, so patient bundles of any seed resolve against the reference bundle of any seed; only
clinicians' names and contact details vary with the seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta, timezone
from typing import Any

from medarchive.demo.codes import (
    LOCATION_PHYSICAL_TYPE,
    MD_DEGREE,
    NPI_TYPE,
    ORGANIZATION_TYPE,
    PRACTITIONER_ROLE,
    US_NPI,
    V3_ROLE_CODE,
    Code,
    snomed,
)
from medarchive.demo.people import CHINESE_LANGUAGES, ENGLISH, person_name, phone

NAME = "MedArchive General Hospital"
NAME_ZH = "医档综合医院"
BASE = "https://hospital.medarchive.example"
MRN_SYSTEM = f"{BASE}/identifiers/mrn"
ORGANIZATION_SYSTEM = f"{BASE}/identifiers/organization"
ENCOUNTER_SYSTEM = f"{BASE}/identifiers/encounter"
TIMEZONE = timezone(timedelta(hours=-8))
HOSPITAL_ID = "hospital"
ADDRESS = {"use": "work", "type": "both", "line": ["1200 Harbor Boulevard"],
           "city": "Riverton", "state": "CA", "postalCode": "95001", "country": "US"}


@dataclass(frozen=True, slots=True)
class Department:
    """A clinical department: an Organization with clinicians of one specialty."""

    key: str
    name: str
    name_zh: str
    specialty: Code  # c80-practice-codes (SNOMED CT)
    clinicians: int
    clinic: str | None  # v3-RoleCode of its outpatient clinic, None when it has no clinic

    @property
    def id(self) -> str:
        return f"dept-{self.key}"


DEPARTMENTS: tuple[Department, ...] = (
    Department("emergency", "Emergency Department", "急诊科",
               snomed("394576009", "Accident & emergency"), 6, None),
    Department("family-medicine", "Family Medicine", "全科医学科",
               snomed("394814009", "General practice"), 6, "FMC"),
    Department("internal-medicine", "Internal Medicine", "内科",
               snomed("419192003", "Internal medicine"), 6, "GIM"),
    Department("cardiology", "Cardiology", "心内科", snomed("394579002", "Cardiology"), 4,
               "GIM"),
    Department("pulmonology", "Pulmonology", "呼吸内科",
               snomed("418112009", "Pulmonary medicine"), 3, "GIM"),
    Department("endocrinology", "Endocrinology", "内分泌科",
               snomed("394583002", "Endocrinology"), 3, "ENDO"),
    Department("nephrology", "Nephrology", "肾内科", snomed("394589003", "Nephrology"), 2,
               "NEPH"),
    Department("neurology", "Neurology", "神经内科", snomed("394591006", "Neurology"), 2, "GIM"),
    Department("orthopedics", "Orthopedics", "骨科", snomed("394801008", "Trauma & orthopedics"),
               3, "ORTHO"),
    Department("general-surgery", "General Surgery", "普通外科",
               snomed("394609007", "General surgery"), 3, "GIM"),
    Department("psychiatry", "Psychiatry", "精神科", snomed("394587001", "Psychiatry"), 3, "GIM"),
    Department("pediatrics", "Pediatrics", "儿科", snomed("394537008", "Pediatric specialty"), 4,
               "PEDC"),
    Department("geriatrics", "Geriatric Medicine", "老年医学科",
               snomed("394811001", "Geriatric medicine"), 2, "GIM"),
    Department("critical-care", "Intensive Care", "重症医学科",
               snomed("408478003", "Critical care medicine"), 3, None),
    Department("radiology", "Radiology", "放射科", snomed("394914008", "Radiology"), 2, None),
    Department("laboratory", "Clinical Laboratory", "检验科",
               snomed("394915009", "General pathology"), 2, None),
)
DEPARTMENT = {d.key: d for d in DEPARTMENTS}

ROLE_DISPLAY = {"FMC": "Family medicine clinic", "GIM": "General internal medicine clinic",
                "ENDO": "Endocrinology clinic", "NEPH": "Nephrology clinic",
                "ORTHO": "Orthopedics clinic", "PEDC": "Pediatrics clinic", "HOSP": "Hospital",
                "ER": "Emergency room", "ICU": "Intensive care unit", "HU": "Hospital unit",
                "RADDX": "Radiology diagnostics or therapeutics unit",
                "HLAB": "hospital laboratory"}


@dataclass(frozen=True, slots=True)
class Ward:
    """An inpatient unit with numbered rooms."""

    key: str
    name: str
    name_zh: str
    department: str
    role: str  # v3-RoleCode
    rooms: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"loc-{self.key}"

    def room_id(self, room: str) -> str:
        return f"loc-{self.key}-{room.lower()}"


def _rooms(first: int) -> tuple[str, ...]:
    return tuple(str(first + n) for n in range(8))


WARDS: tuple[Ward, ...] = (
    Ward("ed", "Emergency Department", "急诊室", "emergency", "ER",
         tuple(f"ED{n}" for n in range(1, 13))),
    Ward("icu", "Intensive Care Unit", "重症监护室", "critical-care", "ICU",
         tuple(f"ICU{n}" for n in range(1, 9))),
    Ward("medical-ward", "Medical Ward 3A", "内科病房3A", "internal-medicine", "HU", _rooms(301)),
    Ward("cardiac-ward", "Cardiac Ward 4B", "心脏病房4B", "cardiology", "HU", _rooms(401)),
    Ward("surgical-ward", "Surgical Ward 5A", "外科病房5A", "general-surgery", "HU",
         _rooms(501)),
    Ward("pediatric-ward", "Pediatric Ward 6C", "儿科病房6C", "pediatrics", "HU", _rooms(601)),
)
WARD = {w.key: w for w in WARDS}
BUILDING_ID = "loc-main"


def _numbering() -> dict[str, tuple[int, ...]]:
    numbers: dict[str, tuple[int, ...]] = {}
    next_number = 1
    for dept in DEPARTMENTS:
        numbers[dept.key] = tuple(range(next_number, next_number + dept.clinicians))
        next_number += dept.clinicians
    return numbers


CLINICIANS = _numbering()  # department key -> practitioner numbers, fixed for every seed


def practitioner_id(number: int) -> str:
    return f"prac-{number:04d}"


def clinic_id(department: str) -> str:
    return f"loc-clinic-{department}"


def _npi(number: int) -> str:
    """A 10-digit NPI with a valid check digit (Luhn over the 80840 prefix, as CMS defines)."""
    base = f"1{990000000 - number * 7919 % 89999999:09d}"[:9]
    digits = [int(c) for c in "80840" + base]
    total = 0
    for index, digit in enumerate(reversed(digits)):
        if index % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return base + str((10 - total % 10) % 10)


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    url = f"{resource['resourceType']}/{resource['id']}"
    return {"fullUrl": url, "resource": resource, "request": {"method": "PUT", "url": url}}


def _organizations() -> list[dict[str, Any]]:
    hospital = {
        "resourceType": "Organization", "id": HOSPITAL_ID,
        "identifier": [{"system": ORGANIZATION_SYSTEM, "value": "MAGH"}],
        "active": True,
        "type": [Code(ORGANIZATION_TYPE, "prov", "Healthcare Provider").concept()],
        "name": NAME, "alias": [NAME_ZH],
        "telecom": [{"system": "phone", "value": "(415) 555-0100", "use": "work"},
                    {"system": "url", "value": BASE, "use": "work"}],
        "address": [dict(ADDRESS, line=list(ADDRESS["line"]))],
    }
    departments = [{
        "resourceType": "Organization", "id": dept.id,
        "identifier": [{"system": ORGANIZATION_SYSTEM, "value": f"MAGH-{dept.key.upper()}"}],
        "active": True,
        "type": [Code(ORGANIZATION_TYPE, "dept", "Hospital Department").concept()],
        "name": dept.name, "alias": [dept.name_zh],
        "partOf": {"reference": f"Organization/{HOSPITAL_ID}", "display": NAME},
    } for dept in DEPARTMENTS]
    return [hospital, *departments]


def _location(lid: str, name: str, alias: str, role: str | None, physical: str,
              organization: str, part_of: str | None) -> dict[str, Any]:
    location: dict[str, Any] = {
        "resourceType": "Location", "id": lid, "status": "active", "name": name,
        "alias": [alias], "mode": "instance",
    }
    if role:
        location["type"] = [Code(V3_ROLE_CODE, role, ROLE_DISPLAY[role]).concept()]
    location["physicalType"] = Code(LOCATION_PHYSICAL_TYPE, physical,
                                    {"bu": "Building", "wa": "Ward", "ro": "Room"}[physical]
                                    ).concept()
    location["managingOrganization"] = {"reference": f"Organization/{organization}"}
    if part_of:
        location["partOf"] = {"reference": f"Location/{part_of}"}
    return location


def _locations() -> list[dict[str, Any]]:
    building = _location(BUILDING_ID, NAME, NAME_ZH, "HOSP", "bu", HOSPITAL_ID, None)
    building["address"] = dict(ADDRESS, line=list(ADDRESS["line"]))
    locations = [building]
    for ward in WARDS:
        locations.append(_location(ward.id, ward.name, ward.name_zh, ward.role, "wa",
                                   f"dept-{ward.department}", BUILDING_ID))
        for room in ward.rooms:
            locations.append(_location(ward.room_id(room), f"{ward.name} room {room}",
                                       f"{ward.name_zh} {room}", None, "ro",
                                       f"dept-{ward.department}", ward.id))
    for dept in DEPARTMENTS:
        if dept.clinic:
            locations.append(_location(clinic_id(dept.key), f"{dept.name} Clinic",
                                       f"{dept.name_zh}门诊", dept.clinic, "ro", dept.id,
                                       BUILDING_ID))
    locations.append(_location("loc-radiology", "Radiology", "放射科", "RADDX", "wa",
                               "dept-radiology", BUILDING_ID))
    locations.append(_location("loc-laboratory", "Clinical Laboratory", "检验科", "HLAB", "wa",
                               "dept-laboratory", BUILDING_ID))
    return locations


def _clinicians(rng: random.Random) -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = []
    for dept in DEPARTMENTS:
        for number in CLINICIANS[dept.key]:
            female = rng.random() < 0.5
            chinese = rng.random() < 0.3
            pid = practitioner_id(number)
            languages = [ENGLISH.concept()]
            if chinese:
                languages.append(CHINESE_LANGUAGES[0].concept())
            resources.append({
                "resourceType": "Practitioner", "id": pid,
                "identifier": [{"use": "official", "type": NPI_TYPE.concept(), "system": US_NPI,
                                "value": _npi(number)}],
                "active": True,
                "name": person_name(rng, female, chinese, prefix="Dr."),
                "telecom": [{"system": "phone", "value": phone(rng), "use": "work"},
                            {"system": "email", "value": f"{pid}@hospital.medarchive.example",
                             "use": "work"}],
                "gender": "female" if female else "male",
                "qualification": [{"code": MD_DEGREE.concept()}],
                "communication": languages,
            })
            where = clinic_id(dept.key) if dept.clinic else next(
                (w.id for w in WARDS if w.department == dept.key), "loc-" + dept.key)
            resources.append({
                "resourceType": "PractitionerRole", "id": f"role-{number:04d}",
                "active": True,
                "practitioner": {"reference": f"Practitioner/{pid}"},
                "organization": {"reference": f"Organization/{dept.id}"},
                "code": [Code(PRACTITIONER_ROLE, "doctor", "Doctor").concept()],
                "specialty": [dept.specialty.named()],
                "location": [{"reference": f"Location/{where}"}],
            })
    return resources


def reference_bundle(seed: int = 0) -> dict[str, Any]:
    """The shared hospital resources as one transaction Bundle of PUTs (R4 §3.1.0.11.2).

    Organizations (the hospital and its departments), Locations (building, wards, rooms,
    clinics), Practitioners and PractitionerRoles. Ids are fixed; names vary with ``seed``.
    """
    rng = random.Random(f"medarchive-demo:{seed}:hospital")
    resources = [*_organizations(), *_locations(), *_clinicians(rng)]
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [_entry(resource) for resource in resources]}
