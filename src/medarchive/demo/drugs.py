"""The formulary of the demo hospital: RxNorm-coded drugs with how each is usually prescribed.

MedicationRequests must be consistent with the conditions that motivate them and must carry
a structured dosage (R4 §6.1.0 Dosage: timing, route, dose quantity), so every drug here knows
its usual dose, frequency and route. RxNorm codes are public facts, hand-picked for common
generics; displays follow RxNorm's clinical-drug names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medarchive.demo.codes import ORDERED_DOSE, ROUTE, RXNORM, UCUM, Code


@dataclass(frozen=True, slots=True)
class Drug:
    """One orderable drug and its default sig."""

    key: str
    code: Code
    dose: float
    unit: str  # UCUM code of the dose quantity
    route: str  # key into codes.ROUTE
    per_day: int  # administrations per day (frequency over a period of 1 d)
    text: str  # the sig as a clinician writes it
    prn: bool = False

    def dosage(self, days: int | None, start: str, end: str | None = None) -> dict[str, Any]:
        """An R4 Dosage (§6.1.0): timing with bounds, route, ordered dose quantity.

        A course of ``days`` is bounded by a Duration; a long-term drug by a Period from
        ``start`` (to ``end`` once it was stopped)."""
        repeat: dict[str, Any] = {"frequency": self.per_day, "period": 1, "periodUnit": "d"}
        if days is not None:
            repeat["boundsDuration"] = {"value": days, "unit": "days", "system": UCUM, "code": "d"}
        else:
            repeat["boundsPeriod"] = {"start": start, "end": end} if end else {"start": start}
        dosage: dict[str, Any] = {
            "sequence": 1,
            "text": self.text,
            "timing": {"repeat": repeat},
            "asNeededBoolean": self.prn,
            "route": ROUTE[self.route].concept(),
            "doseAndRate": [{
                "type": ORDERED_DOSE.concept(),
                "doseQuantity": {"value": self.dose, "unit": _UNIT_TEXT.get(self.unit, self.unit),
                                 "system": UCUM, "code": self.unit},
            }],
        }
        return dosage


_UNIT_TEXT = {"{puff}": "puff", "[IU]": "IU", "{tbl}": "tablet"}


def _rx(code: str, display: str) -> Code:
    return Code(RXNORM, code, display)


_TABLE: tuple[Drug, ...] = (
    # cardiovascular
    Drug("lisinopril", _rx("314076", "lisinopril 10 MG Oral Tablet"), 10, "mg", "oral", 1,
         "Take 1 tablet by mouth once daily"),
    Drug("losartan", _rx("979492", "losartan potassium 50 MG Oral Tablet"), 50, "mg", "oral", 1,
         "Take 1 tablet by mouth once daily"),
    Drug("amlodipine", _rx("197361", "amlodipine 5 MG Oral Tablet"), 5, "mg", "oral", 1,
         "Take 1 tablet by mouth once daily"),
    Drug("hctz", _rx("310798", "hydrochlorothiazide 25 MG Oral Tablet"), 25, "mg", "oral", 1,
         "Take 1 tablet by mouth every morning"),
    Drug("metoprolol", _rx("866414", "24 HR metoprolol succinate 100 MG Extended Release Oral "
                                     "Tablet [Toprol]"), 100, "mg", "oral", 1,
         "Take 1 tablet by mouth once daily"),
    Drug("furosemide", _rx("313988", "furosemide 40 MG Oral Tablet"), 40, "mg", "oral", 1,
         "Take 1 tablet by mouth every morning"),
    Drug("furosemide-iv", _rx("1719286", "10 ML furosemide 10 MG/ML Injection"), 40, "mg", "iv",
         2, "40 mg IV every 12 hours"),
    Drug("spironolactone", _rx("313096", "spironolactone 25 MG Oral Tablet"), 25, "mg", "oral", 1,
         "Take 1 tablet by mouth once daily"),
    Drug("digoxin", _rx("197604", "digoxin 0.125 MG Oral Tablet"), 0.125, "mg", "oral", 1,
         "Take 1 tablet by mouth once daily"),
    Drug("apixaban", _rx("1364445", "apixaban 5 MG Oral Tablet"), 5, "mg", "oral", 2,
         "Take 1 tablet by mouth twice daily"),
    Drug("warfarin", _rx("855332", "warfarin sodium 5 MG Oral Tablet"), 5, "mg", "oral", 1,
         "Take 1 tablet by mouth once daily in the evening; dose adjusted to INR"),
    Drug("aspirin", _rx("243670", "aspirin 81 MG Oral Tablet"), 81, "mg", "oral", 1,
         "Take 1 tablet by mouth once daily"),
    Drug("clopidogrel", _rx("309362", "clopidogrel 75 MG Oral Tablet"), 75, "mg", "oral", 1,
         "Take 1 tablet by mouth once daily"),
    Drug("atorvastatin", _rx("259255", "atorvastatin 80 MG Oral Tablet"), 80, "mg", "oral", 1,
         "Take 1 tablet by mouth at bedtime"),
    Drug("simvastatin", _rx("312961", "simvastatin 20 MG Oral Tablet"), 20, "mg", "oral", 1,
         "Take 1 tablet by mouth at bedtime"),
    Drug("nitroglycerin", _rx("705129", "nitroglycerin 0.4 MG/ACTUAT Mucosal Spray"), 0.4, "mg",
         "sublingual", 3,
         "1 spray under the tongue at onset of chest pain; may repeat every 5 minutes", prn=True),
    Drug("enoxaparin", _rx("854235", "0.4 ML enoxaparin sodium 100 MG/ML Prefilled Syringe"),
         40, "mg", "sc", 1, "40 mg subcutaneously once daily"),
    # endocrine
    Drug("metformin", _rx("861007", "metformin hydrochloride 500 MG Oral Tablet"), 500, "mg",
         "oral", 2, "Take 1 tablet by mouth twice daily with meals"),
    Drug("insulin", _rx("106892", "insulin isophane, human 70 UNT/ML / insulin, regular, human "
                                  "30 UNT/ML Injectable Suspension [Humulin]"), 20, "[IU]", "sc",
         2, "Inject 20 units subcutaneously twice daily before breakfast and dinner"),
    Drug("levothyroxine", _rx("966222", "levothyroxine sodium 0.05 MG Oral Tablet"), 0.05, "mg",
         "oral", 1, "Take 1 tablet by mouth every morning on an empty stomach"),
    Drug("allopurinol", _rx("197319", "allopurinol 100 MG Oral Tablet"), 100, "mg", "oral", 1,
         "Take 1 tablet by mouth once daily"),
    Drug("alendronate", _rx("904419", "alendronic acid 10 MG Oral Tablet"), 10, "mg", "oral", 1,
         "Take 1 tablet by mouth every morning with a full glass of water"),
    Drug("ferrous-sulfate", _rx("310325", "ferrous sulfate 325 MG Oral Tablet"), 325, "mg",
         "oral", 1, "Take 1 tablet by mouth once daily"),
    # respiratory and allergy
    Drug("albuterol", _rx("745679", "200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler"),
         2, "{puff}", "inhaled", 4, "Inhale 2 puffs every 4 to 6 hours as needed for wheezing",
         prn=True),
    Drug("fluticasone", _rx("895994", "120 ACTUAT fluticasone propionate 0.044 MG/ACTUAT "
                                      "Metered Dose Inhaler"), 2, "{puff}", "inhaled", 2,
         "Inhale 2 puffs twice daily"),
    Drug("prednisone", _rx("312617", "predniSONE 5 MG Oral Tablet"), 40, "mg", "oral", 1,
         "Take 40 mg (8 tablets) by mouth once daily"),
    Drug("loratadine", _rx("311372", "loratadine 10 MG Oral Tablet"), 10, "mg", "oral", 1,
         "Take 1 tablet by mouth once daily"),
    Drug("epinephrine", _rx("1870230", "NDA020800 0.3 ML epinephrine 1 MG/ML Auto-Injector"),
         0.3, "mg", "sc", 1, "Inject 0.3 mg into the outer thigh for anaphylaxis; call 911",
         prn=True),
    # anti-infectives
    Drug("amoxicillin", _rx("308192", "amoxicillin 500 MG Oral Tablet"), 500, "mg", "oral", 3,
         "Take 1 tablet by mouth three times daily"),
    Drug("amoxicillin-suspension", _rx("308189", "amoxicillin 80 MG/ML Oral Suspension"), 5,
         "mL", "oral", 2, "Give 5 mL by mouth twice daily"),
    Drug("amox-clav", _rx("562251", "amoxicillin 250 MG / clavulanate 125 MG Oral Tablet"), 1,
         "{tbl}", "oral", 3, "Take 1 tablet by mouth every 8 hours"),
    Drug("penicillin-v", _rx("834102", "penicillin V potassium 500 MG Oral Tablet"), 500, "mg",
         "oral", 2, "Take 1 tablet by mouth twice daily"),
    Drug("azithromycin", _rx("308460", "azithromycin 250 MG Oral Tablet"), 250, "mg", "oral", 1,
         "Take 2 tablets on day 1, then 1 tablet daily"),
    Drug("cefuroxime", _rx("309097", "cefuroxime 250 MG Oral Tablet"), 250, "mg", "oral", 2,
         "Take 1 tablet by mouth twice daily"),
    Drug("ceftriaxone", _rx("1665021", "ceftriaxone 1000 MG Injection"), 1000, "mg", "iv", 1,
         "1 g IV once daily"),
    Drug("nitrofurantoin", _rx("311995", "nitrofurantoin, macrocrystals 50 MG Oral Capsule"), 50,
         "mg", "oral", 4, "Take 1 capsule by mouth four times daily"),
    Drug("phenazopyridine", _rx("1094107", "phenazopyridine hydrochloride 100 MG Oral Tablet"),
         100, "mg", "oral", 3, "Take 1 tablet by mouth three times daily after meals"),
    # pain
    Drug("acetaminophen", _rx("313782", "acetaminophen 325 MG Oral Tablet"), 650, "mg", "oral",
         4, "Take 2 tablets by mouth every 6 hours as needed for pain or fever", prn=True),
    Drug("acetaminophen-child", _rx("282464", "acetaminophen 160 MG Oral Tablet"), 160, "mg",
         "oral", 4, "Chew 1 tablet every 6 hours as needed for pain or fever", prn=True),
    Drug("loratadine-child", _rx("665078", "loratadine 5 MG Chewable Tablet"), 5, "mg", "oral",
         1, "Chew 1 tablet once daily"),
    Drug("ibuprofen", _rx("310965", "ibuprofen 200 MG Oral Tablet"), 400, "mg", "oral", 3,
         "Take 2 tablets by mouth every 8 hours as needed for pain", prn=True),
    Drug("naproxen", _rx("198014", "naproxen 500 MG Oral Tablet"), 500, "mg", "oral", 2,
         "Take 1 tablet by mouth twice daily with food as needed for pain", prn=True),
    Drug("oxycodone-apap", _rx("1049221", "acetaminophen 325 MG / oxycodone hydrochloride 5 MG "
                                          "Oral Tablet"), 1, "{tbl}", "oral", 4,
         "Take 1 tablet by mouth every 6 hours as needed for severe pain", prn=True),
    # mental health and neurology
    Drug("sertraline", _rx("312941", "sertraline 50 MG Oral Tablet"), 50, "mg", "oral", 1,
         "Take 1 tablet by mouth once daily"),
    Drug("fluoxetine", _rx("310385", "fluoxetine 20 MG Oral Capsule"), 20, "mg", "oral", 1,
         "Take 1 capsule by mouth every morning"),
    Drug("galantamine", _rx("310436", "galantamine 4 MG Oral Tablet"), 4, "mg", "oral", 2,
         "Take 1 tablet by mouth twice daily with meals"),
)

DRUGS: dict[str, Drug] = {drug.key: drug for drug in _TABLE}

# What a clinician reaches for when the first choice is contraindicated by an allergy.
ALTERNATIVE = {
    "amoxicillin": "azithromycin", "amoxicillin-suspension": "azithromycin",
    "amox-clav": "cefuroxime",
    "penicillin-v": "azithromycin", "aspirin": "clopidogrel", "ibuprofen": "acetaminophen",
    "naproxen": "acetaminophen",
}

# Children under 12 get a child's form, or nothing ("") where the drug is not for them.
PEDIATRIC = {
    "acetaminophen": "acetaminophen-child", "ibuprofen": "acetaminophen-child",
    "naproxen": "acetaminophen-child", "oxycodone-apap": "acetaminophen-child",
    "amoxicillin": "amoxicillin-suspension", "amox-clav": "amoxicillin-suspension",
    "penicillin-v": "amoxicillin-suspension", "cefuroxime": "amoxicillin-suspension",
    "nitrofurantoin": "amoxicillin-suspension", "loratadine": "loratadine-child",
    "azithromycin": "amoxicillin-suspension", "phenazopyridine": "", "prednisone": "",
    "ferrous-sulfate": "", "enoxaparin": "",
}
