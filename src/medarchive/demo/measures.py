"""What the demo hospital measures: vital signs and laboratory tests, with LOINC codes, UCUM units
and reference ranges.

Vital signs follow the R4 vital-signs profile (§11.9 "Vital Signs": LOINC code, category
vital-signs, UCUM unit); laboratory results carry UCUM units, a reference range and an
interpretation, and are grouped into the panels a hospital laboratory reports. Codes and
ranges are public facts written out by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from medarchive.demo.codes import LOINC, Code


@dataclass(frozen=True, slots=True)
class Measure:
    """One measurable quantity: its code, unit and (for laboratory tests) normal range."""

    key: str
    code: Code
    unit: str  # UCUM code
    unit_text: str
    decimals: int
    low: float | None = None
    high: float | None = None
    low_female: float | None = None
    high_female: float | None = None

    def normal(self, female: bool) -> tuple[float | None, float | None]:
        """The reference range for a patient of this sex."""
        if female and (self.low_female is not None or self.high_female is not None):
            return self.low_female, self.high_female
        return self.low, self.high


def _loinc(code: str, display: str) -> Code:
    return Code(LOINC, code, display)


VITALS: dict[str, Measure] = {m.key: m for m in (
    Measure("heart-rate", _loinc("8867-4", "Heart rate"), "/min", "beats/minute", 0),
    Measure("respiratory-rate", _loinc("9279-1", "Respiratory rate"), "/min", "breaths/minute", 0),
    Measure("spo2", _loinc("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
            "%", "%", 0),
    Measure("temperature", _loinc("8310-5", "Body temperature"), "Cel", "C", 1),
    Measure("weight", _loinc("29463-7", "Body weight"), "kg", "kg", 1),
    Measure("height", _loinc("8302-2", "Body height"), "cm", "cm", 1),
    Measure("bmi", _loinc("39156-5", "Body mass index (BMI) [Ratio]"), "kg/m2", "kg/m2", 1),
    Measure("systolic", _loinc("8480-6", "Systolic blood pressure"), "mm[Hg]", "mmHg", 0),
    Measure("diastolic", _loinc("8462-4", "Diastolic blood pressure"), "mm[Hg]", "mmHg", 0),
)}

# The R4 oxygen-saturation profile fixes code 2708-6; pulse oximetry 59408-5 rides along.
SPO2_BASE = _loinc("2708-6", "Oxygen saturation in Arterial blood")
BLOOD_PRESSURE = _loinc("85354-9", "Blood pressure panel with all children optional")

LABS: dict[str, Measure] = {m.key: m for m in (
    Measure("glucose", _loinc("2345-7", "Glucose [Mass/volume] in Serum or Plasma"), "mg/dL",
            "mg/dL", 0, 70, 99),
    Measure("a1c", _loinc("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"), "%", "%", 1,
            4.0, 5.6),
    Measure("creatinine", _loinc("2160-0", "Creatinine [Mass/volume] in Serum or Plasma"),
            "mg/dL", "mg/dL", 2, 0.74, 1.35, 0.59, 1.04),
    Measure("bun", _loinc("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma"), "mg/dL",
            "mg/dL", 0, 7, 20),
    Measure("sodium", _loinc("2951-2", "Sodium [Moles/volume] in Serum or Plasma"), "mmol/L",
            "mmol/L", 0, 135, 145),
    Measure("potassium", _loinc("2823-3", "Potassium [Moles/volume] in Serum or Plasma"),
            "mmol/L", "mmol/L", 1, 3.5, 5.1),
    Measure("chloride", _loinc("2075-0", "Chloride [Moles/volume] in Serum or Plasma"), "mmol/L",
            "mmol/L", 0, 98, 107),
    Measure("co2", _loinc("2028-9", "Carbon dioxide, total [Moles/volume] in Serum or Plasma"),
            "mmol/L", "mmol/L", 0, 22, 29),
    Measure("calcium", _loinc("17861-6", "Calcium [Mass/volume] in Serum or Plasma"), "mg/dL",
            "mg/dL", 1, 8.6, 10.3),
    Measure("egfr", _loinc("33914-3", "Glomerular filtration rate/1.73 sq M.predicted [Volume "
                                      "Rate/Area] in Serum or Plasma by Creatinine-based "
                                      "formula (MDRD)"), "mL/min/{1.73_m2}", "mL/min/1.73m2",
            0, 60, None),
    Measure("alt", _loinc("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in "
                                    "Serum or Plasma"), "U/L", "U/L", 0, 7, 56),
    Measure("ast", _loinc("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in "
                                    "Serum or Plasma"), "U/L", "U/L", 0, 10, 40),
    Measure("albumin", _loinc("1751-7", "Albumin [Mass/volume] in Serum or Plasma"), "g/dL",
            "g/dL", 1, 3.5, 5.0),
    Measure("wbc", _loinc("6690-2", "Leukocytes [#/volume] in Blood by Automated count"),
            "10*3/uL", "10^3/uL", 1, 4.5, 11.0),
    Measure("rbc", _loinc("789-8", "Erythrocytes [#/volume] in Blood by Automated count"),
            "10*6/uL", "10^6/uL", 2, 4.5, 5.9, 4.1, 5.1),
    Measure("hemoglobin", _loinc("718-7", "Hemoglobin [Mass/volume] in Blood"), "g/dL", "g/dL",
            1, 13.5, 17.5, 12.0, 15.5),
    Measure("hematocrit", _loinc("4544-3", "Hematocrit [Volume Fraction] of Blood by Automated "
                                           "count"), "%", "%", 1, 41, 53, 36, 46),
    Measure("platelets", _loinc("777-3", "Platelets [#/volume] in Blood by Automated count"),
            "10*3/uL", "10^3/uL", 0, 150, 400),
    Measure("cholesterol", _loinc("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma"),
            "mg/dL", "mg/dL", 0, None, 200),
    Measure("triglycerides", _loinc("2571-8", "Triglyceride [Mass/volume] in Serum or Plasma"),
            "mg/dL", "mg/dL", 0, None, 150),
    Measure("hdl", _loinc("2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma"),
            "mg/dL", "mg/dL", 0, 40, None, 50, None),
    Measure("ldl", _loinc("18262-6", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by "
                                     "Direct assay"), "mg/dL", "mg/dL", 0, None, 130),
    Measure("tsh", _loinc("3016-3", "Thyrotropin [Units/volume] in Serum or Plasma"), "m[IU]/L",
            "mIU/L", 2, 0.4, 4.0),
    Measure("ntprobnp", _loinc("33762-6", "Natriuretic peptide.B prohormone N-Terminal "
                                          "[Mass/volume] in Serum or Plasma"), "pg/mL", "pg/mL",
            0, None, 125),
    Measure("troponin", _loinc("10839-9", "Troponin I.cardiac [Mass/volume] in Serum or Plasma"),
            "ng/mL", "ng/mL", 2, None, 0.04),
    Measure("crp", _loinc("1988-5", "C reactive protein [Mass/volume] in Serum or Plasma"),
            "mg/L", "mg/L", 1, None, 10),
    Measure("lactate", _loinc("2524-7", "Lactate [Moles/volume] in Serum or Plasma"), "mmol/L",
            "mmol/L", 1, 0.5, 2.2),
    Measure("uacr", _loinc("14959-1", "Microalbumin/Creatinine [Mass Ratio] in Urine"), "mg/g",
            "mg/g", 0, None, 30),
)}


@dataclass(frozen=True, slots=True)
class Panel:
    """A laboratory order reported as one DiagnosticReport."""

    key: str
    code: Code
    tests: tuple[str, ...]


_BMP = ("glucose", "bun", "creatinine", "egfr", "sodium", "potassium", "chloride", "co2",
        "calcium")

PANELS: dict[str, Panel] = {p.key: p for p in (
    Panel("cbc", _loinc("58410-2", "CBC panel - Blood by Automated count"),
          ("wbc", "rbc", "hemoglobin", "hematocrit", "platelets")),
    Panel("bmp", _loinc("51990-0", "Basic metabolic panel - Blood"), _BMP),
    Panel("cmp", _loinc("24323-8", "Comprehensive metabolic 2000 panel - Serum or Plasma"),
          (*_BMP, "albumin", "alt", "ast")),
    Panel("lipid", _loinc("57698-3", "Lipid panel with direct LDL - Serum or Plasma"),
          ("cholesterol", "triglycerides", "hdl", "ldl")),
    *(Panel(key, LABS[key].code, (key,))
      for key in ("a1c", "tsh", "ntprobnp", "troponin", "crp", "lactate", "uacr")),
)}
