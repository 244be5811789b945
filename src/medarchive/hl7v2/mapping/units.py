"""Units of measure written by HL7 v2 senders (OBX-6, RXA-7, RXE-5 ...) as UCUM codes.

FHIR Quantity wants UCUM (R4 §2.24.0.10 "Quantity": system http://unitsofmeasure.org) so values
compare and convert; HL7 v2 senders write UCUM, ISO+ (ISO 2955), ANSI X3.50 or free text such as
"beats/min" and "giga.l-1". Units that are UCUM as written or have a known spelling here get a
code; anything else keeps only its text in Quantity.unit, never a guessed code.
"""

from __future__ import annotations

UCUM = "http://unitsofmeasure.org"

# Spellings seen from senders (compared case-insensitively) → UCUM.
_SPELLINGS: dict[str, str] = {
    # counts per volume (haematology)
    "tera.l-1": "10*12/L", "tera/l": "10*12/L", "10^12/l": "10*12/L", "x10e12/l": "10*12/L",
    "giga.l-1": "10*9/L", "giga/l": "10*9/L", "10^9/l": "10*9/L", "x10e9/l": "10*9/L",
    "10*3/ul": "10*3/uL", "10^3/ul": "10*3/uL", "x10e3/ul": "10*3/uL", "k/ul": "10*3/uL",
    "thou/ul": "10*3/uL", "10*6/ul": "10*6/uL", "10^6/ul": "10*6/uL", "x10e6/ul": "10*6/uL",
    "m/ul": "10*6/uL", "mill/ul": "10*6/uL", "/ul": "/uL", "cells/ul": "/uL",
    "/hpf": "/[HPF]", "/lpf": "/[LPF]",
    # rates
    "beats/min": "/min", "bpm": "/min", "breaths/min": "/min", "/min": "/min", "per min": "/min",
    "ml/min": "mL/min", "ml/hr": "mL/h", "ml/h": "mL/h", "mg/hr": "mg/h", "mg/h": "mg/h",
    "ug/min": "ug/min", "ml/min/1.73m2": "mL/min/{1.73_m2}",
    # pressure, temperature
    "mmhg": "mm[Hg]", "mm hg": "mm[Hg]", "mm(hg)": "mm[Hg]", "cmh2o": "cm[H2O]",
    "degf": "[degF]", "deg f": "[degF]", "degc": "Cel", "deg c": "Cel", "cel": "Cel",
    # mass, length, volume
    "kg": "kg", "g": "g", "mg": "mg", "ug": "ug", "mcg": "ug", "ng": "ng", "pg": "pg",
    "lb": "[lb_av]", "lbs": "[lb_av]", "oz": "[oz_av]", "m": "m", "cm": "cm", "mm": "mm",
    "in": "[in_i]", "inch": "[in_i]", "ft": "[ft_i]", "l": "L", "dl": "dL", "ml": "mL",
    "ul": "uL", "fl": "fL", "kg/m2": "kg/m2", "m2": "m2",
    # concentrations
    "g/dl": "g/dL", "g/l": "g/L", "g/ml": "g/mL", "mg/dl": "mg/dL", "mg/l": "mg/L",
    "mg/ml": "mg/mL", "ug/ml": "ug/mL", "mcg/ml": "ug/mL", "ug/l": "ug/L", "ug/dl": "ug/dL",
    "ng/ml": "ng/mL", "ng/dl": "ng/dL", "ng/l": "ng/L", "pg/ml": "pg/mL", "mmol/l": "mmol/L",
    "umol/l": "umol/L", "nmol/l": "nmol/L", "pmol/l": "pmol/L", "mol/l": "mol/L",
    "meq/l": "meq/L", "mosm/kg": "mosm/kg", "iu": "[IU]", "iu/l": "[IU]/L", "iu/ml": "[IU]/mL",
    "miu/ml": "m[IU]/mL", "uiu/ml": "u[IU]/mL", "u/l": "U/L", "u/ml": "U/mL", "mu/l": "mU/L",
    # fractions, time
    "%": "%", "pct": "%", "percent": "%", "s": "s", "sec": "s", "min": "min", "h": "h",
    "hr": "h", "hrs": "h", "d": "d", "day": "d", "days": "d", "wk": "wk", "mo": "mo",
    "a": "a", "yr": "a", "y": "a", "years": "a",
}

# Coding-system names (CE-3/CWE-3) that say the code is UCUM already.
_UCUM_SYSTEMS = frozenset({"UCUM", "HL70396^UCUM", UCUM})

_KNOWN_CODES = frozenset(_SPELLINGS.values())


def to_ucum(code: str, system: str = "") -> str | None:
    """The UCUM code for a unit as written in HL7 v2 (None when it cannot be told).

    A code the sender marks as UCUM is taken as written; otherwise the known spellings above
    (ISO+, ANSI and common free text) are looked up, exactly and then case-insensitively.
    """
    code = code.strip()
    if not code:
        return None
    if system.strip().upper() in _UCUM_SYSTEMS or system.strip() == UCUM:
        return code
    if code in _KNOWN_CODES:
        return code
    if len(code) == 1:  # "M", "C", "F": too ambiguous to guess across case
        return _SPELLINGS.get(code)
    return _SPELLINGS.get(code.lower())
