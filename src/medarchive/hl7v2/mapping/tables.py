"""HL7 v2 tables translated to FHIR R4 codes, kept as data apart from the mapping code.

Each dict is one HL7 v2 table (numbers from the v2.8 standard) mapped to the FHIR value set that
binds the target element, following the HL7 "V2-to-FHIR" implementation guide's concept maps
where they exist. A code missing here is not guessed: the mapper leaves the field in
``MappingResult.unmapped`` instead.
"""

from __future__ import annotations

import re
from urllib.parse import quote

V2_TABLE = "http://terminology.hl7.org/CodeSystem/v2-{:04d}"
LOCAL_CODE_SYSTEM = "urn:medarchive:hl7:cs:"
LOCAL_AUTHORITY = "urn:medarchive:hl7:aa:"
OBSERVATION_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"

# HL7 table 0396 coding-system names (CE-3/CWE-3) → FHIR code system URIs.
CODE_SYSTEMS: dict[str, str] = {
    "LN": "http://loinc.org", "LOINC": "http://loinc.org",
    "SCT": "http://snomed.info/sct", "SNM": "http://snomed.info/sct",
    "SNM3": "http://snomed.info/sct", "SNOMED": "http://snomed.info/sct",
    "SNOMEDCT": "http://snomed.info/sct",
    "I9": "http://hl7.org/fhir/sid/icd-9-cm", "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9CDX": "http://hl7.org/fhir/sid/icd-9-cm", "I10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm", "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "C4": "http://www.ama-assn.org/go/cpt", "CPT4": "http://www.ama-assn.org/go/cpt",
    "CPT": "http://www.ama-assn.org/go/cpt",
    "CVX": "http://hl7.org/fhir/sid/cvx", "NDC": "http://hl7.org/fhir/sid/ndc",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "RXN": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "UCUM": "http://unitsofmeasure.org", "MVX": "http://terminology.hl7.org/CodeSystem/MVX",
    "NCIT": "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl",
    "CDCREC": "urn:oid:2.16.840.1.113883.6.238",
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
    "ISO3166_1": "urn:iso:std:iso:3166", "NUCC": "http://nucc.org/provider-taxonomy",
}
_HL7_TABLE = re.compile(r"HL7(\d{4})")
_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def is_oid(text: str) -> bool:
    return bool(_OID.fullmatch(text))


def is_uuid(text: str) -> bool:
    return bool(_UUID.fullmatch(text))


def code_system_uri(name: str) -> str:
    """The FHIR system for a coding-system name from CE-3/CWE-3 (table 0396).

    Known names and ``HL7nnnn`` tables have their published URIs, OIDs become ``urn:oid:``,
    URIs stay as written, and any other (local) name becomes ``urn:medarchive:hl7:cs:<name>``.
    """
    name = name.strip()
    upper = name.upper()
    if upper in CODE_SYSTEMS:
        return CODE_SYSTEMS[upper]
    table = _HL7_TABLE.fullmatch(upper)
    if table:
        return V2_TABLE.format(int(table.group(1)))
    if is_oid(name):
        return f"urn:oid:{name}"
    if name.startswith(("http://", "https://", "urn:")):
        return name
    return LOCAL_CODE_SYSTEM + quote(name, safe="")


# Assigning authorities with a published FHIR identifier system.
WELL_KNOWN_AUTHORITIES = {
    "SSA": "http://hl7.org/fhir/sid/us-ssn", "USSSA": "http://hl7.org/fhir/sid/us-ssn",
    "NPI": "http://hl7.org/fhir/sid/us-npi",
}

# 0001 administrative sex → Patient.gender
GENDER = {"F": "female", "M": "male", "O": "other", "U": "unknown", "A": "other",
          "N": "unknown"}
# 0200 name type → HumanName.use
NAME_USE = {"L": "official", "C": "official", "R": "official", "D": "usual", "A": "usual",
            "M": "maiden", "N": "nickname", "S": "anonymous", "TEMP": "temp", "NB": "temp",
            "BAD": "old", "NOUSE": "old"}
# 0190 address type → (Address.use, Address.type)
ADDRESS_USE = {"H": ("home", None), "P": ("home", None), "B": ("work", None),
               "O": ("work", None), "C": ("temp", None), "V": ("temp", None),
               "BA": ("old", None), "M": (None, "postal"), "SH": (None, "physical")}
# 0201 telecommunication use → (ContactPoint.system or None, ContactPoint.use or None)
TELECOM_USE = {"PRN": (None, "home"), "ORN": (None, "home"), "WPN": (None, "work"),
               "VHN": (None, "temp"), "NET": ("email", None), "BPN": ("pager", None),
               "EMR": (None, None), "ASN": (None, None)}
# 0202 telecommunication equipment type → (ContactPoint.system, use override)
TELECOM_EQUIPMENT = {"PH": ("phone", None), "FX": ("fax", None), "CP": ("phone", "mobile"),
                     "BP": ("pager", None), "INTERNET": ("email", None),
                     "X.400": ("email", None), "TDD": ("other", None), "TTY": ("other", None),
                     "MD": ("other", None), "SAT": ("phone", None)}
# 0004 patient class → Encounter.class (v3 ActCode)
PATIENT_CLASS = {"E": ("EMER", "emergency"), "I": ("IMP", "inpatient encounter"),
                 "O": ("AMB", "ambulatory"), "P": ("PRENC", "pre-admission"),
                 "R": ("AMB", "ambulatory"), "B": ("IMP", "inpatient encounter")}
# 0085 observation result status → Observation.status
OBSERVATION_STATUS = {"C": "corrected", "D": "entered-in-error", "F": "final",
                      "I": "registered", "P": "preliminary", "R": "preliminary",
                      "S": "preliminary", "U": "final", "W": "entered-in-error",
                      "X": "cancelled", "A": "amended", "O": "registered"}
# 0123 result status → DiagnosticReport.status
REPORT_STATUS = {"O": "registered", "I": "registered", "S": "registered", "A": "partial",
                 "P": "preliminary", "R": "partial", "C": "corrected", "F": "final",
                 "X": "cancelled"}
# 0078 abnormal flags that exist unchanged in v3 ObservationInterpretation
INTERPRETATION = frozenset({
    "<", ">", "A", "AA", "AC", "B", "CAR", "D", "DET", "E", "EX", "EXP", "H", "HH", "HU", "HX",
    "I", "IE", "IND", "L", "LL", "LU", "LX", "MS", "N", "ND", "NEG", "NR", "NS", "POS", "QCF",
    "R", "RR", "S", "SDD", "SYN-R", "SYN-S", "TOX", "U", "UNE", "VS", "W", "WR"})
# 0038 order status → ServiceRequest/MedicationRequest status
ORDER_STATUS = {"A": "active", "CA": "revoked", "CM": "completed", "DC": "revoked",
                "ER": "entered-in-error", "HD": "on-hold", "IP": "active", "RP": "revoked",
                "SC": "active"}
# 0119 order control → ServiceRequest status (used when ORC-5 is empty)
ORDER_CONTROL = {"NW": "active", "OK": "active", "SN": "active", "XO": "active",
                 "XX": "active", "RL": "active", "OR": "active", "SC": "active",
                 "RE": "active", "CA": "revoked", "OC": "revoked", "CR": "revoked",
                 "DC": "revoked", "OD": "revoked", "DR": "revoked", "HD": "on-hold",
                 "OH": "on-hold", "RP": "revoked", "RU": "active"}
# MedicationRequest.status differs from ServiceRequest.status in its code list.
MEDICATION_STATUS = {"active": "active", "revoked": "cancelled", "completed": "completed",
                     "entered-in-error": "entered-in-error", "on-hold": "on-hold"}
# 0027 priority → request priority
PRIORITY = {"S": "stat", "A": "asap", "R": "routine", "P": "urgent", "T": "urgent"}
# 0278 filler status → Appointment.status
APPOINTMENT_STATUS = {"BOOKED": "booked", "OVERBOOK": "booked", "PENDING": "pending",
                      "WAITLIST": "waitlist", "CANCELLED": "cancelled", "DC": "cancelled",
                      "DELETED": "entered-in-error", "COMPLETE": "fulfilled",
                      "NOSHOW": "noshow", "STARTED": "arrived"}
# 0322 completion status → Immunization.status
IMMUNIZATION_STATUS = {"CP": "completed", "PA": "completed", "RE": "not-done",
                       "NA": "not-done"}
# 0271 document completion status → DocumentReference.docStatus
DOCUMENT_STATUS = {"AU": "final", "LA": "final", "DI": "preliminary", "DO": "preliminary",
                   "IP": "preliminary", "IN": "preliminary", "PA": "preliminary"}
# 0275 document availability → DocumentReference.status
DOCUMENT_AVAILABILITY = {"AV": "current", "UN": "current", "OB": "superseded",
                         "CA": "entered-in-error"}
# 0272 document confidentiality → v3 Confidentiality
DOCUMENT_CONFIDENTIALITY = {"V": "V", "R": "R", "U": "N"}
# 0191 type of referenced data / MIME type for ED and TXA-3
CONTENT_TYPES = {"TX": "text/plain", "FT": "text/x-hl7-ft", "TEXT": "text/plain",
                 "AP": "application/octet-stream", "IM": "application/octet-stream",
                 "AU": "application/octet-stream", "SI": "application/octet-stream",
                 "NS": "application/octet-stream"}
