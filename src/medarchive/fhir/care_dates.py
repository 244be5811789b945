"""The care dates of patient records, for ``Patient/$everything`` ``start`` and ``end``.

The R4 Patient-everything operation says of ``start``/``end``: "The date range relates to care
dates, not record currency dates - e.g. all records relating to care provided in a certain
date range. If no start date is provided, all records prior to the end date are in scope."
R4 does not say which element is a record's care date, so this table names, per resource type
of the Patient compartment, the date search parameters that hold it (the clinical or service
date: ``Observation.effective``, ``Encounter.period``, ``Condition.onset`` or its recorded
date, ``MedicationRequest.authoredOn``...). A record is in range when one of those values
overlaps the range. Types absent from the table have no care date (``Patient``, ``Coverage``,
``Group``, ``RelatedPerson``, and the resources records refer to: ``Practitioner``,
``Organization``, ``Medication``...) and are kept whatever the range.
"""

from __future__ import annotations

from medarchive.fhir.search.query import AnyOf, Clause, Predicate, RangeValue

CARE_DATES: dict[str, tuple[str, ...]] = {
    "Account": ("period",),
    "AdverseEvent": ("date",),
    "AllergyIntolerance": ("onset", "date"),
    "Appointment": ("date",),
    "AuditEvent": ("date",),
    "Basic": ("created",),
    "CarePlan": ("date",),
    "CareTeam": ("date",),
    "ChargeItem": ("occurrence",),
    "Claim": ("created",),
    "ClaimResponse": ("created",),
    "ClinicalImpression": ("date",),
    "Communication": ("sent", "received"),
    "CommunicationRequest": ("occurrence", "authored"),
    "Composition": ("date", "period"),
    "Condition": ("onset-date", "recorded-date"),
    "Consent": ("date",),
    "CoverageEligibilityRequest": ("created",),
    "CoverageEligibilityResponse": ("created",),
    "DetectedIssue": ("identified",),
    "DeviceRequest": ("event-date", "authored-on"),
    "DiagnosticReport": ("date", "issued"),
    "DocumentManifest": ("created",),
    "DocumentReference": ("period", "date"),
    "Encounter": ("date",),
    "EpisodeOfCare": ("date",),
    "ExplanationOfBenefit": ("created",),
    "FamilyMemberHistory": ("date",),
    "Flag": ("date",),
    "Goal": ("start-date",),
    "ImagingStudy": ("started",),
    "Immunization": ("date",),
    "ImmunizationEvaluation": ("date",),
    "ImmunizationRecommendation": ("date",),
    "Invoice": ("date",),
    "List": ("date",),
    "MeasureReport": ("period", "date"),
    "Media": ("created",),
    "MedicationAdministration": ("effective-time",),
    "MedicationDispense": ("whenhandedover", "whenprepared"),
    "MedicationRequest": ("authoredon",),
    "MedicationStatement": ("effective",),
    "NutritionOrder": ("datetime",),
    "Observation": ("date",),
    "Procedure": ("date",),
    "Provenance": ("recorded",),
    "QuestionnaireResponse": ("authored",),
    "RequestGroup": ("authored",),
    "ResearchSubject": ("date",),
    "RiskAssessment": ("date",),
    "Schedule": ("date",),
    "ServiceRequest": ("occurrence", "authored"),
    "Specimen": ("collected",),
    "SupplyRequest": ("date",),
    "VisionPrescription": ("datewritten",),
}


def care_date_clause(resource_type: str, low: int, high: int) -> Clause | None:
    """"A care date of this ``resource_type`` record overlaps [low, high]" (epoch
    microseconds, inclusive), to be decided as a search of that type; None when the type has
    no care date."""
    params = CARE_DATES.get(resource_type)
    if not params:
        return None
    found = [Predicate(param, "date", (RangeValue("ap", low, high),)) for param in params]
    return found[0] if len(found) == 1 else AnyOf(tuple(found))
