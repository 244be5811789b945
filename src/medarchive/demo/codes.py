"""The code systems and small curated code tables the demo generator draws from.

Synthetic records are only useful for testing search, terminology and analytics if they carry
the codes real hospital systems send. This module holds the coding-system URIs (as named in the
R4 terminology pages) and the hand-picked administrative, vaccine, procedure and allergy codes.
Code values are public facts; each table is small, written here, and checked against the R4
value sets where the spec binds the element (see ``tests/demo``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# R4 §4.3 "Using Codes in Resources": the canonical URIs of the external code systems.
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
UCUM = "http://unitsofmeasure.org"
BCP47 = "urn:ietf:bcp:47"
US_SSN = "http://hl7.org/fhir/sid/us-ssn"
US_NPI = "http://hl7.org/fhir/sid/us-npi"

_THO = "http://terminology.hl7.org/CodeSystem/"
V2_IDENTIFIER_TYPE = _THO + "v2-0203"
V2_DEGREE = _THO + "v2-0360/2.7"
V2_SERVICE_SECTION = _THO + "v2-0074"
V2_PERFORMER_FUNCTION = _THO + "v2-0443"
V3_MARITAL = _THO + "v3-MaritalStatus"
V3_ACT_CODE = _THO + "v3-ActCode"
V3_PARTICIPATION = _THO + "v3-ParticipationType"
V3_INTERPRETATION = _THO + "v3-ObservationInterpretation"
V3_ROLE_CODE = _THO + "v3-RoleCode"
V3_ROUTE = _THO + "v3-RouteOfAdministration"
V3_ACT_SITE = _THO + "v3-ActSite"
OBSERVATION_CATEGORY = _THO + "observation-category"
CONDITION_CLINICAL = _THO + "condition-clinical"
CONDITION_VERIFICATION = _THO + "condition-ver-status"
CONDITION_CATEGORY = _THO + "condition-category"
ALLERGY_CLINICAL = _THO + "allergyintolerance-clinical"
ALLERGY_VERIFICATION = _THO + "allergyintolerance-verification"
ADMIT_SOURCE = _THO + "admit-source"
DISCHARGE_DISPOSITION = _THO + "discharge-disposition"
DIAGNOSIS_ROLE = _THO + "diagnosis-role"
LOCATION_PHYSICAL_TYPE = _THO + "location-physical-type"
ORGANIZATION_TYPE = _THO + "organization-type"
PRACTITIONER_ROLE = _THO + "practitioner-role"
DOSE_RATE_TYPE = _THO + "dose-rate-type"


@dataclass(frozen=True, slots=True)
class Code:
    """One concept of one code system, with the display the generator writes."""

    system: str
    code: str
    display: str

    def coding(self) -> dict[str, Any]:
        """An R4 Coding (§2.24.0.2)."""
        return {"system": self.system, "code": self.code, "display": self.display}

    def concept(self) -> dict[str, Any]:
        """An R4 CodeableConcept (§2.24.0.3) holding this one coding."""
        return {"coding": [{"system": self.system, "code": self.code, "display": self.display}]}

    def named(self, text: str | None = None) -> dict[str, Any]:
        """This coding as a CodeableConcept with a human ``text`` (the display by default)."""
        return {"coding": [{"system": self.system, "code": self.code, "display": self.display}],
                "text": text or self.display}


def snomed(code: str, display: str) -> Code:
    return Code(SNOMED, code, display)


# --- Administrative codes -------------------------------------------------------------------

MRN_TYPE = Code(V2_IDENTIFIER_TYPE, "MR", "Medical record number")
SSN_TYPE = Code(V2_IDENTIFIER_TYPE, "SS", "Social Security number")
NPI_TYPE = Code(V2_IDENTIFIER_TYPE, "PRN", "Provider number")  # identifier-type has no NPI
MD_DEGREE = Code(V2_DEGREE, "MD", "Doctor of Medicine")
RN_DEGREE = Code(V2_DEGREE, "RN", "Registered Nurse")

MARITAL = {
    "S": Code(V3_MARITAL, "S", "Never Married"),
    "M": Code(V3_MARITAL, "M", "Married"),
    "D": Code(V3_MARITAL, "D", "Divorced"),
    "W": Code(V3_MARITAL, "W", "Widowed"),
}

ENCOUNTER_CLASS = {
    "AMB": Code(V3_ACT_CODE, "AMB", "ambulatory"),
    "EMER": Code(V3_ACT_CODE, "EMER", "emergency"),
    "IMP": Code(V3_ACT_CODE, "IMP", "inpatient encounter"),
}

ENCOUNTER_TYPE = {
    "checkup": snomed("185349003", "Encounter for check up (procedure)"),
    "well-child": snomed("410620009", "Well child visit (procedure)"),
    "symptom": snomed("185345009", "Encounter for symptom (procedure)"),
    "follow-up": snomed("390906007", "Follow-up encounter (procedure)"),
    "vaccination": snomed("33879002",
                          "Administration of vaccine to produce active immunity (procedure)"),
    "emergency": snomed("50849002", "Emergency room admission (procedure)"),
    "admission": snomed("183452005", "Emergency hospital admission (procedure)"),
}

ATTENDER = Code(V3_PARTICIPATION, "ATND", "attender")
PRIMARY_PERFORMER = Code(V3_PARTICIPATION, "PPRF", "primary performer")
ADMIT_FROM_EMERGENCY = Code(ADMIT_SOURCE, "emd", "From accident/emergency department")
DISCHARGE = {
    "home": Code(DISCHARGE_DISPOSITION, "home", "Home"),
    "snf": Code(DISCHARGE_DISPOSITION, "snf", "Skilled nursing facility"),
    "rehab": Code(DISCHARGE_DISPOSITION, "rehab", "Rehabilitation"),
    "exp": Code(DISCHARGE_DISPOSITION, "exp", "Expired"),
}
DIAGNOSIS_USE = {
    "AD": Code(DIAGNOSIS_ROLE, "AD", "Admission diagnosis"),
    "DD": Code(DIAGNOSIS_ROLE, "DD", "Discharge diagnosis"),
    "CC": Code(DIAGNOSIS_ROLE, "CC", "Chief complaint"),
}

CLINICAL_STATUS = {s: Code(CONDITION_CLINICAL, s, s.capitalize())
                   for s in ("active", "resolved", "inactive", "remission")}
CONFIRMED = Code(CONDITION_VERIFICATION, "confirmed", "Confirmed")
PROBLEM_LIST = Code(CONDITION_CATEGORY, "problem-list-item", "Problem List Item")
ENCOUNTER_DIAGNOSIS = Code(CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis")
ALLERGY_ACTIVE = Code(ALLERGY_CLINICAL, "active", "Active")
ALLERGY_CONFIRMED = Code(ALLERGY_VERIFICATION, "confirmed", "Confirmed")

VITAL_SIGNS = Code(OBSERVATION_CATEGORY, "vital-signs", "Vital Signs")
LABORATORY = Code(OBSERVATION_CATEGORY, "laboratory", "Laboratory")
SOCIAL_HISTORY = Code(OBSERVATION_CATEGORY, "social-history", "Social History")
LAB_SECTION = Code(V2_SERVICE_SECTION, "LAB", "Laboratory")
INTERPRETATION = {
    "H": Code(V3_INTERPRETATION, "H", "High"),
    "L": Code(V3_INTERPRETATION, "L", "Low"),
    "N": Code(V3_INTERPRETATION, "N", "Normal"),
}

SMOKING_STATUS = Code(LOINC, "72166-2", "Tobacco smoking status")
SMOKING = {
    "never": snomed("266919005", "Never smoked tobacco (finding)"),
    "former": snomed("8517006", "Ex-smoker (finding)"),
    "current": snomed("449868002", "Smokes tobacco daily (finding)"),
}

ROUTE = {
    "oral": snomed("26643006", "Oral route (qualifier value)"),
    "sublingual": snomed("37839007", "Sublingual route (qualifier value)"),
    "iv": snomed("47625008", "Intravenous route (qualifier value)"),
    "sc": snomed("34206005", "Subcutaneous route (qualifier value)"),
    "inhaled": snomed("447694001", "Respiratory tract route (qualifier value)"),
}
ORDERED_DOSE = Code(DOSE_RATE_TYPE, "ordered", "Ordered")
INTRAMUSCULAR = Code(V3_ROUTE, "IM", "Injection, intramuscular")
ARM_SITE = {"LA": Code(V3_ACT_SITE, "LA", "left arm"), "RA": Code(V3_ACT_SITE, "RA", "right arm")}
ADMINISTERING = Code(V2_PERFORMER_FUNCTION, "AP", "Administering Provider")

# --- Vaccines (CVX) -------------------------------------------------------------------------

VACCINE = {
    "hepb-ped": Code(CVX, "08", "Hep B, adolescent or pediatric"),
    "dtap": Code(CVX, "20", "DTaP"),
    "ipv": Code(CVX, "10", "IPV"),
    "hib": Code(CVX, "49", "Hib (PRP-OMP)"),
    "pcv13": Code(CVX, "133", "Pneumococcal conjugate PCV 13"),
    "rotavirus": Code(CVX, "119", "rotavirus, monovalent"),
    "mmr": Code(CVX, "03", "MMR"),
    "varicella": Code(CVX, "21", "varicella"),
    "hepa-ped": Code(CVX, "83", "Hep A, ped/adol, 2 dose"),
    "tdap": Code(CVX, "115", "Tdap"),
    "td": Code(CVX, "113", "Td (adult) preservative free"),
    "hpv9": Code(CVX, "165", "HPV9"),
    "mcv4": Code(CVX, "114", "meningococcal MCV4P"),
    "flu": Code(CVX, "140", "Influenza, seasonal, injectable, preservative free"),
    "ppsv23": Code(CVX, "33", "pneumococcal polysaccharide vaccine, 23 valent"),
    "zoster": Code(CVX, "187", "zoster vaccine recombinant"),
    "covid": Code(CVX, "208", "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, "
                              "preservative free, 30 mcg/0.3mL dose"),
}

# Childhood schedule: (age in months, vaccines given at that well-child visit).
CHILD_SCHEDULE: tuple[tuple[int, tuple[str, ...]], ...] = (
    (0, ("hepb-ped",)),
    (2, ("dtap", "ipv", "hib", "pcv13", "rotavirus", "hepb-ped")),
    (4, ("dtap", "ipv", "hib", "pcv13", "rotavirus")),
    (6, ("dtap", "pcv13", "hepb-ped", "ipv")),
    (12, ("mmr", "varicella", "hepa-ped", "hib", "pcv13")),
    (15, ("dtap",)),
    (18, ("hepa-ped",)),
    (48, ("dtap", "ipv", "mmr", "varicella")),
    (132, ("tdap", "hpv9", "mcv4")),
    (138, ("hpv9",)),
    (192, ("mcv4",)),
)

# --- Procedures (SNOMED CT) ------------------------------------------------------------------

PROCEDURE = {
    "ecg": snomed("29303009", "Electrocardiographic procedure (procedure)"),
    "chest-xray": snomed("399208008", "Plain chest X-ray (procedure)"),
    "echo": snomed("433236007", "Transthoracic echocardiography (procedure)"),
    "pci": snomed("415070008", "Percutaneous coronary intervention (procedure)"),
    "ct-head": snomed("303653007", "Computed tomography of head (procedure)"),
    "hip-replacement": snomed("52734007", "Total replacement of hip (procedure)"),
    "immobilization": snomed("274474001", "Bone immobilization (procedure)"),
    "appendectomy": snomed("80146002", "Appendectomy (procedure)"),
    "abdominal-us": snomed("45036003", "Ultrasonography of abdomen (procedure)"),
    "spirometry": snomed("23426006", "Measurement of respiratory function (procedure)"),
    "bone-density": snomed("312681000", "Bone density scan (procedure)"),
    "suture": snomed("288086009", "Suture open wound (procedure)"),
    "throat-culture": snomed("117015009", "Throat culture (procedure)"),
    "ankle-xray": snomed("19490002", "Ankle X-ray (procedure)"),
    "clavicle-xray": snomed("168594001", "Clavicle X-ray (procedure)"),
    "arm-xray": snomed("1225002", "Upper arm X-ray (procedure)"),
}

# --- Allergies --------------------------------------------------------------------------------

REACTION = {
    "anaphylaxis": snomed("39579001", "Anaphylaxis (disorder)"),
    "urticaria": snomed("64305001", "Urticaria (disorder)"),
    "rash": snomed("271807003", "Eruption of skin (disorder)"),
    "itching": snomed("418290006", "Itching (finding)"),
    "angioedema": snomed("41291007", "Angioedema (disorder)"),
    "dyspnea": snomed("267036007", "Dyspnea (finding)"),
    "nausea": snomed("422587007", "Nausea (finding)"),
    "vomiting": snomed("422400008", "Vomiting (disorder)"),
    "diarrhea": snomed("62315008", "Diarrhea (finding)"),
    "sneezing": snomed("76067001", "Sneezing (finding)"),
    "congestion": snomed("68235000", "Nasal congestion (finding)"),
}


@dataclass(frozen=True, slots=True)
class Allergen:
    """A substance a patient may be allergic to, with how such allergies usually present."""

    key: str
    substance: Code
    category: str  # allergy-intolerance-category
    kind: str  # allergy | intolerance
    weight: float  # relative frequency among allergic patients
    reactions: tuple[str, ...]
    high_risk: bool  # anaphylaxis possible: criticality high, epinephrine prescribed
    avoid: tuple[str, ...] = ()  # drug keys contraindicated by this allergy


ALLERGENS: tuple[Allergen, ...] = (
    Allergen("penicillin", snomed("764146007", "Penicillin (substance)"), "medication", "allergy",
             10, ("urticaria", "rash", "angioedema"), False,
             ("amoxicillin", "amoxicillin-suspension", "amox-clav", "penicillin-v")),
    Allergen("sulfonamide", snomed("387406002", "Sulfonamide (substance)"), "medication",
             "allergy", 4, ("rash", "itching"), False),
    Allergen("aspirin", snomed("387458008", "Aspirin (substance)"), "medication", "allergy", 2,
             ("urticaria", "dyspnea"), False, ("aspirin", "ibuprofen", "naproxen")),
    Allergen("ibuprofen", snomed("387207008", "Ibuprofen (substance)"), "medication", "allergy",
             2, ("urticaria", "angioedema"), False, ("ibuprofen", "naproxen")),
    Allergen("codeine", snomed("387494007", "Codeine (substance)"), "medication", "intolerance",
             3, ("nausea", "vomiting"), False),
    Allergen("latex", snomed("111088007", "Latex (substance)"), "environment", "allergy", 2,
             ("urticaria", "itching"), False),
    Allergen("peanut", snomed("762952008", "Peanut (substance)"), "food", "allergy", 5,
             ("anaphylaxis", "urticaria", "angioedema"), True),
    Allergen("cashew", snomed("227493005", "Cashew nuts (substance)"), "food", "allergy", 2,
             ("anaphylaxis", "urticaria"), True),
    Allergen("egg", snomed("102263004", "Eggs (edible) (substance)"), "food", "allergy", 3,
             ("urticaria", "vomiting"), False),
    Allergen("milk", snomed("3718001", "Cow's milk (substance)"), "food", "intolerance", 3,
             ("diarrhea", "nausea"), False),
    Allergen("fish", snomed("227037002", "Fish - dietary (substance)"), "food", "allergy", 2,
             ("urticaria", "angioedema"), False),
    Allergen("bee-venom", snomed("288328004", "Bee venom (substance)"), "environment",
             "allergy", 3, ("anaphylaxis", "urticaria"), True),
    Allergen("grass-pollen", snomed("256277009", "Grass pollen (substance)"), "environment",
             "allergy", 9, ("sneezing", "congestion", "itching"), False),
    Allergen("dust-mite", snomed("260147004", "House dust mite (organism)"), "environment",
             "allergy", 7, ("sneezing", "congestion"), False),
    Allergen("animal-dander", snomed("264287008", "Animal dander (substance)"), "environment",
             "allergy", 6, ("sneezing", "itching", "congestion"), False),
)
