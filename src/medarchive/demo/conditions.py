"""The diseases of the demo population: codes, how common they are and how they are treated.

Every Condition carries both an ICD-10 (WHO) and a SNOMED CT coding, as hospital systems that
bill in ICD and chart in SNOMED send them. Prevalence and incidence figures are rough public
epidemiology by age band; they only need to make a synthetic population look like a hospital's
patients (more hypertension at 70 than at 20, more otitis in children, more UTI in women), so
that search, analytics and UI have realistic shapes to work on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medarchive.demo.codes import ICD10, SNOMED, Code

# Upper bounds (exclusive) of the age bands the tables below are indexed by.
AGE_BANDS = (18, 40, 60, 75, 200)


def age_band(age: float) -> int:
    for index, bound in enumerate(AGE_BANDS):
        if age < bound:
            return index
    return len(AGE_BANDS) - 1


@dataclass(frozen=True, slots=True)
class Disease:
    """A diagnosis as charted: plain name, ICD-10 and SNOMED CT."""

    key: str
    name: str
    icd10: Code
    snomed: Code

    def concept(self) -> dict[str, Any]:
        """CodeableConcept with both codings (R4 Condition.code, §9.2; binding is example)."""
        return {"coding": [self.icd10.coding(), self.snomed.coding()], "text": self.name}


def _d(key: str, name: str, icd: str, icd_display: str, sct: str, sct_display: str) -> Disease:
    return Disease(key, name, Code(ICD10, icd, icd_display), Code(SNOMED, sct, sct_display))


DISEASES: dict[str, Disease] = {d.key: d for d in (
    # chronic
    _d("hypertension", "Essential hypertension", "I10", "Essential (primary) hypertension",
       "59621000", "Essential hypertension (disorder)"),
    _d("hyperlipidemia", "Hyperlipidemia", "E78.5", "Hyperlipidaemia, unspecified", "55822004",
       "Hyperlipidemia (disorder)"),
    _d("diabetes", "Type 2 diabetes mellitus", "E11.9",
       "Type 2 diabetes mellitus without complications", "44054006",
       "Diabetes mellitus type 2 (disorder)"),
    _d("obesity", "Obesity", "E66.9", "Obesity, unspecified", "414916001", "Obesity (disorder)"),
    _d("asthma", "Asthma", "J45.9", "Asthma, unspecified", "195967001", "Asthma (disorder)"),
    _d("copd", "Chronic obstructive pulmonary disease", "J44.9",
       "Chronic obstructive pulmonary disease, unspecified", "13645005",
       "Chronic obstructive lung disease (disorder)"),
    _d("chd", "Coronary artery disease", "I25.1", "Atherosclerotic heart disease", "53741008",
       "Coronary arteriosclerosis (disorder)"),
    _d("heart-failure", "Congestive heart failure", "I50.0", "Congestive heart failure",
       "88805009", "Chronic congestive heart failure (disorder)"),
    _d("atrial-fibrillation", "Atrial fibrillation", "I48.9",
       "Atrial fibrillation and atrial flutter, unspecified", "49436004",
       "Atrial fibrillation (disorder)"),
    _d("ckd", "Chronic kidney disease stage 3", "N18.3", "Chronic kidney disease, stage 3",
       "433144002", "Chronic kidney disease stage 3 (disorder)"),
    _d("depression", "Depression", "F32.9", "Depressive episode, unspecified", "35489007",
       "Depressive disorder (disorder)"),
    _d("anxiety", "Generalized anxiety disorder", "F41.1", "Generalized anxiety disorder",
       "21897009", "Generalized anxiety disorder (disorder)"),
    _d("hypothyroidism", "Hypothyroidism", "E03.9", "Hypothyroidism, unspecified", "40930008",
       "Hypothyroidism (disorder)"),
    _d("osteoarthritis", "Osteoarthritis of knee", "M17.9", "Gonarthrosis, unspecified",
       "239873007", "Osteoarthritis of knee (disorder)"),
    _d("osteoporosis", "Osteoporosis", "M81.9", "Osteoporosis, unspecified", "64859006",
       "Osteoporosis (disorder)"),
    _d("gout", "Gout", "M10.9", "Gout, unspecified", "90560007", "Gout (disorder)"),
    _d("alzheimers", "Alzheimer's disease", "G30.9", "Alzheimer disease, unspecified",
       "26929004", "Alzheimer's disease (disorder)"),
    _d("migraine", "Migraine", "G43.9", "Migraine, unspecified", "37796009",
       "Migraine (disorder)"),
    _d("allergic-rhinitis", "Seasonal allergic rhinitis", "J30.2",
       "Other seasonal allergic rhinitis", "367498001", "Seasonal allergic rhinitis (disorder)"),
    _d("anemia", "Iron deficiency anemia", "D50.9", "Iron deficiency anaemia, unspecified",
       "87522002", "Iron deficiency anemia (disorder)"),
    # acute, seen in clinic or emergency department
    _d("viral-uri", "Upper respiratory infection", "J06.9",
       "Acute upper respiratory infection, unspecified", "54150009",
       "Upper respiratory infection (disorder)"),
    _d("pharyngitis", "Acute viral pharyngitis", "J02.9", "Acute pharyngitis, unspecified",
       "195662009", "Acute viral pharyngitis (disorder)"),
    _d("strep-throat", "Streptococcal pharyngitis", "J02.0", "Streptococcal pharyngitis",
       "43878008", "Streptococcal sore throat (disorder)"),
    _d("otitis-media", "Otitis media", "H66.9", "Otitis media, unspecified", "65363002",
       "Otitis media (disorder)"),
    _d("sinusitis", "Acute bacterial sinusitis", "J01.9", "Acute sinusitis, unspecified",
       "75498004", "Acute bacterial sinusitis (disorder)"),
    _d("bronchitis", "Acute bronchitis", "J20.9", "Acute bronchitis, unspecified", "10509002",
       "Acute bronchitis (disorder)"),
    _d("uti", "Urinary tract infection", "N39.0", "Urinary tract infection, site not specified",
       "68566005", "Urinary tract infectious disease (disorder)"),
    _d("gastroenteritis", "Gastroenteritis", "A09.9",
       "Gastroenteritis and colitis of unspecified origin", "25374005",
       "Gastroenteritis (disorder)"),
    _d("ankle-sprain", "Sprain of ankle", "S93.4", "Sprain and strain of ankle", "44465007",
       "Sprain of ankle (disorder)"),
    _d("laceration", "Laceration of hand", "S61.9",
       "Open wound of wrist and hand, part unspecified", "284549007",
       "Laceration of hand (disorder)"),
    _d("covid-19", "COVID-19", "U07.1", "COVID-19, virus identified", "840539006",
       "COVID-19 (disorder)"),
    _d("forearm-fracture", "Fracture of forearm", "S52.9", "Fracture of forearm, part unspecified",
       "65966004", "Fracture of forearm (disorder)"),
    _d("ankle-fracture", "Fracture of ankle", "S82.8", "Fractures of other parts of lower leg",
       "16114001", "Fracture of ankle (disorder)"),
    _d("clavicle-fracture", "Fracture of clavicle", "S42.0", "Fracture of clavicle", "58150001",
       "Fracture of clavicle (disorder)"),
    _d("rib-fracture", "Fracture of rib", "S22.3", "Fracture of rib", "33737001",
       "Fracture of rib (disorder)"),
    # acute, usually admitted
    _d("pneumonia", "Pneumonia", "J18.9", "Pneumonia, unspecified", "233604007",
       "Pneumonia (disorder)"),
    _d("copd-exacerbation", "Acute exacerbation of COPD", "J44.1",
       "Chronic obstructive pulmonary disease with acute exacerbation, unspecified",
       "195951007", "Acute exacerbation of chronic obstructive airways disease (disorder)"),
    _d("mi", "Acute myocardial infarction", "I21.9", "Acute myocardial infarction, unspecified",
       "22298006", "Myocardial infarction (disorder)"),
    _d("stroke", "Ischemic stroke", "I63.9", "Cerebral infarction, unspecified", "422504002",
       "Ischemic stroke (disorder)"),
    _d("hip-fracture", "Fracture of neck of femur", "S72.0", "Fracture of neck of femur",
       "5913000", "Fracture of neck of femur (disorder)"),
    _d("appendicitis", "Acute appendicitis", "K35.8", "Acute appendicitis, other and unspecified",
       "85189001", "Acute appendicitis (disorder)"),
    _d("sepsis", "Sepsis", "A41.9", "Sepsis, unspecified", "91302008", "Sepsis (disorder)"),
)}


@dataclass(frozen=True, slots=True)
class Chronic:
    """A long-term condition: prevalence by age band and its standing care plan."""

    key: str
    prevalence: tuple[float, float, float, float, float]  # share with the disease, by age band
    female_ratio: float  # risk of women relative to men
    earliest: int  # youngest age of onset
    visits: int  # follow-up visits a year
    drugs: tuple[str, ...]  # maintenance drugs started at diagnosis
    labs: tuple[str, ...]  # panels ordered at follow-up
    department: str
    risks: tuple[tuple[str, float], ...] = ()  # odds multipliers: other diseases, smoker, obese
    recent: float | None = None  # onset at most this many years before the record ends
    remits: tuple[str, float, int] | None = None  # (status, chance per follow-up, after days)


CHRONIC: tuple[Chronic, ...] = (
    Chronic("hypertension", (0.005, 0.08, 0.33, 0.58, 0.72), 0.95, 25, 1, ("lisinopril",),
            ("bmp",), "internal-medicine", (("obese", 1.6),)),
    Chronic("diabetes", (0.002, 0.03, 0.12, 0.22, 0.23), 0.9, 25, 3, ("metformin",),
            ("a1c", "bmp"), "endocrinology", (("obese", 2.5),)),
    Chronic("hyperlipidemia", (0.0, 0.06, 0.28, 0.45, 0.42), 1.0, 30, 1, ("simvastatin",),
            ("lipid",), "internal-medicine", (("diabetes", 1.4),)),
    Chronic("asthma", (0.08, 0.08, 0.08, 0.07, 0.06), 1.2, 2, 1, ("albuterol", "fluticasone"),
            (), "pulmonology"),
    Chronic("copd", (0.0, 0.005, 0.05, 0.11, 0.14), 0.9, 40, 2, ("albuterol", "fluticasone"),
            ("cbc",), "pulmonology", (("smoker", 4.0),)),
    Chronic("chd", (0.0, 0.002, 0.03, 0.10, 0.17), 0.6, 40, 1,
            ("aspirin", "atorvastatin", "nitroglycerin"), ("lipid",), "cardiology",
            (("diabetes", 1.8), ("hypertension", 1.5), ("smoker", 1.6))),
    Chronic("heart-failure", (0.0, 0.001, 0.012, 0.05, 0.11), 0.9, 45, 3,
            ("furosemide", "metoprolol", "spironolactone"), ("bmp", "ntprobnp"), "cardiology",
            (("hypertension", 1.8), ("chd", 3.0))),
    Chronic("atrial-fibrillation", (0.0, 0.001, 0.01, 0.07, 0.14), 0.75, 45, 2,
            ("apixaban", "metoprolol"), ("bmp",), "cardiology",
            (("hypertension", 1.5), ("heart-failure", 2.0))),
    Chronic("ckd", (0.0, 0.01, 0.05, 0.15, 0.30), 1.1, 35, 2, ("lisinopril",), ("bmp", "cbc"),
            "nephrology", (("diabetes", 2.0), ("hypertension", 1.7))),
    Chronic("depression", (0.03, 0.09, 0.09, 0.08, 0.08), 1.7, 12, 2, ("sertraline",), (),
            "psychiatry", remits=("remission", 0.25, 365)),
    Chronic("anxiety", (0.04, 0.08, 0.07, 0.06, 0.05), 1.6, 10, 1, ("sertraline",), (),
            "psychiatry", remits=("remission", 0.2, 365)),
    Chronic("hypothyroidism", (0.005, 0.03, 0.06, 0.10, 0.12), 4.0, 10, 1, ("levothyroxine",),
            ("tsh",), "endocrinology"),
    Chronic("osteoarthritis", (0.0, 0.01, 0.10, 0.25, 0.35), 1.4, 40, 1, ("naproxen",), (),
            "orthopedics", (("obese", 1.8),)),
    Chronic("osteoporosis", (0.0, 0.0, 0.03, 0.12, 0.22), 4.0, 50, 1, ("alendronate",), (),
            "internal-medicine"),
    Chronic("gout", (0.0, 0.01, 0.04, 0.06, 0.07), 0.3, 30, 1, ("allopurinol",), ("bmp",),
            "internal-medicine", (("ckd", 2.0), ("obese", 1.5))),
    Chronic("alzheimers", (0.0, 0.0, 0.002, 0.03, 0.12), 1.3, 60, 2, ("galantamine",), (),
            "geriatrics"),
    Chronic("migraine", (0.02, 0.12, 0.10, 0.05, 0.03), 2.5, 10, 1, ("naproxen",), (),
            "family-medicine"),
    Chronic("allergic-rhinitis", (0.10, 0.14, 0.12, 0.09, 0.07), 1.0, 3, 0, ("loratadine",), (),
            "family-medicine"),
    Chronic("anemia", (0.02, 0.04, 0.03, 0.05, 0.08), 2.5, 1, 2, ("ferrous-sulfate",), ("cbc",),
            "internal-medicine", (("ckd", 2.5),), recent=6.0, remits=("resolved", 0.5, 150)),
)


@dataclass(frozen=True, slots=True)
class Acute:
    """A self-limited illness or injury seen once, in clinic or the emergency department."""

    key: str
    rate: tuple[float, float, float, float, float]  # episodes per person-year, by age band
    female_ratio: float
    emergency: float  # share of episodes seen in the emergency department
    days: int  # typical days until resolved
    fever: float  # peak rise of body temperature, Cel
    drugs: tuple[str, ...]
    course: int  # days of drug therapy
    procedures: tuple[str, ...] = ()
    labs: tuple[str, ...] = ()
    since: str = ""  # ISO date before which the disease did not exist (COVID-19)


ACUTE: tuple[Acute, ...] = (
    Acute("viral-uri", (0.45, 0.12, 0.10, 0.08, 0.08), 1.0, 0.04, 7, 0.8, ("acetaminophen",), 5),
    Acute("pharyngitis", (0.15, 0.05, 0.03, 0.02, 0.02), 1.0, 0.03, 6, 0.9, ("acetaminophen",),
          5),
    Acute("strep-throat", (0.08, 0.02, 0.01, 0.005, 0.005), 1.0, 0.03, 7, 1.6, ("penicillin-v",),
          10, ("throat-culture",)),
    Acute("otitis-media", (0.22, 0.01, 0.005, 0.005, 0.005), 1.0, 0.05, 8, 1.1,
          ("amoxicillin",), 10),
    Acute("sinusitis", (0.03, 0.06, 0.06, 0.05, 0.04), 1.3, 0.02, 10, 0.5, ("amox-clav",), 10),
    Acute("bronchitis", (0.06, 0.04, 0.05, 0.06, 0.08), 1.0, 0.08, 14, 0.7, ("acetaminophen",),
          7),
    Acute("uti", (0.01, 0.05, 0.04, 0.06, 0.09), 6.0, 0.08, 6, 0.6,
          ("nitrofurantoin", "phenazopyridine"), 5, (), ("cbc",)),
    Acute("gastroenteritis", (0.10, 0.04, 0.03, 0.03, 0.04), 1.0, 0.15, 4, 0.7, (), 0, (),
          ("bmp",)),
    Acute("ankle-sprain", (0.02, 0.02, 0.01, 0.005, 0.005), 1.0, 0.5, 21, 0.0, ("ibuprofen",),
          7, ("ankle-xray",)),
    Acute("laceration", (0.02, 0.02, 0.01, 0.01, 0.01), 0.7, 0.8, 10, 0.0, (), 0, ("suture",)),
    Acute("covid-19", (0.04, 0.06, 0.06, 0.06, 0.06), 1.0, 0.15, 12, 1.3, ("acetaminophen",), 7,
          (), (), "2020-03-01"),
    Acute("forearm-fracture", (0.02, 0.005, 0.004, 0.006, 0.01), 1.2, 0.9, 42, 0.0,
          ("ibuprofen",), 10, ("arm-xray", "immobilization")),
    Acute("ankle-fracture", (0.006, 0.005, 0.004, 0.004, 0.004), 1.0, 0.9, 49, 0.0,
          ("ibuprofen",), 10, ("ankle-xray", "immobilization")),
    Acute("clavicle-fracture", (0.006, 0.003, 0.002, 0.002, 0.002), 0.6, 0.9, 42, 0.0,
          ("ibuprofen",), 10, ("clavicle-xray", "immobilization")),
    Acute("rib-fracture", (0.001, 0.002, 0.003, 0.005, 0.01), 1.0, 0.9, 42, 0.0,
          ("acetaminophen",), 14, ("chest-xray",)),
)
