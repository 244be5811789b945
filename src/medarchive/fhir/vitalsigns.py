"""The LOINC codes of the FHIR R4 vital-signs profiles (R4 §observation-vitalsigns, the
``Observation.code`` of each profile), whose newest value per patient the stores keep at hand.

An early-warning score (``devices.news2``) needs, for each patient, the newest Observation of a
few vital signs; a search for it reads the patient's Observations (the generic search index has
no (subject, code, date) order), so the stores answer it from what they keep as Observations
are written (``Store.latest_vital_signs``). The codes are data of the specification, listed once.
"""

from __future__ import annotations

LOINC = "http://loinc.org"
VITAL_SIGNS = (
    "85353-1",  # vital signs panel
    "9279-1",  # respiratory rate
    "8867-4",  # heart rate
    "2708-6",  # oxygen saturation in arterial blood
    "59408-5",  # oxygen saturation by pulse oximetry (the oxygen saturation profile's code)
    "8310-5",  # body temperature
    "8302-2",  # body height
    "9843-4",  # head circumference
    "29463-7",  # body weight
    "39156-5",  # body mass index
    "85354-9",  # blood pressure panel
    "8480-6",  # systolic blood pressure
    "8462-4",  # diastolic blood pressure
)
