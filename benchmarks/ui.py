"""How fast the web UI renders a large patient chart (issue 8 target: 500 encounters < 500 ms).

Builds a fresh SQLite database with security on, one patient with ``--encounters`` encounters,
each with a heart-rate and a blood-pressure Observation, plus problems and medications, and a
physician login. Then, in-process through the ASGI app (Starlette TestClient, so no socket),
times ``GET /patients/{id}`` (the whole chart: about eleven audited FHIR interactions through
the router, charts drawn as SVG, template rendered) against a reference measured in the same
run: the FHIR API's own ``GET /fhir/Encounter?patient=...&_count=1000`` for the same patient
with a bearer token. Prints one JSON object with median and 95th percentile wall-clock ms, the
median CPU ms and the load average when it finished.

    python benchmarks/ui.py [--encounters 500] [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from medarchive.app import build_services, create_app
from medarchive.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PASSWORD = "benchmark passphrase long"


def records(encounters: int) -> dict[str, Any]:
    """A transaction Bundle: one patient and its ``encounters`` visits with vital signs."""
    entries: list[dict[str, Any]] = [{"resource": {
        "resourceType": "Patient", "id": "bench", "gender": "female", "birthDate": "1950-03-04",
        "name": [{"family": "Bench", "given": ["Mary"]}],
        "identifier": [{"system": "urn:mrn", "value": "900001"}]},
        "request": {"method": "PUT", "url": "Patient/bench"}}]
    subject = {"reference": "Patient/bench"}
    loinc = "http://loinc.org"
    # the physician's relationship with the patient (docs/security.md "Relationships")
    entries.append({"resource": {"resourceType": "Practitioner", "id": "bench-dr",
                                 "name": [{"family": "Doctor"}]},
                    "request": {"method": "PUT", "url": "Practitioner/bench-dr"}})
    entries.append({"resource": {"resourceType": "CareTeam", "id": "bench-team",
                                 "status": "active", "subject": subject, "participant": [
                                     {"member": {"reference": "Practitioner/bench-dr"}}]},
                    "request": {"method": "PUT", "url": "CareTeam/bench-team"}})
    for n in range(encounters):
        day = f"{2000 + n // 40:04d}-{1 + n % 12:02d}-{1 + n % 28:02d}"
        entries.append({"resource": {
            "resourceType": "Encounter", "id": f"e{n}", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                      "code": "AMB", "display": "ambulatory"},
            "type": [{"text": "Follow-up"}], "subject": subject,
            "period": {"start": f"{day}T09:00:00Z", "end": f"{day}T09:30:00Z"}},
            "request": {"method": "PUT", "url": f"Encounter/e{n}"}})
        vital = {"resourceType": "Observation", "status": "final", "subject": subject,
                 "encounter": {"reference": f"Encounter/e{n}"},
                 "effectiveDateTime": f"{day}T09:10:00Z",
                 "category": [{"coding": [{
                     "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                     "code": "vital-signs"}]}]}
        entries.append({"resource": {
            **vital, "id": f"hr{n}", "code": {"coding": [{"system": loinc, "code": "8867-4"}]},
            "valueQuantity": {"value": 60 + n % 40, "unit": "/min"}},
            "request": {"method": "PUT", "url": f"Observation/hr{n}"}})
        entries.append({"resource": {
            **vital, "id": f"bp{n}", "code": {"coding": [{"system": loinc, "code": "85354-9"}]},
            "component": [
                {"code": {"coding": [{"system": loinc, "code": "8480-6"}]},
                 "valueQuantity": {"value": 110 + n % 30, "unit": "mmHg"}},
                {"code": {"coding": [{"system": loinc, "code": "8462-4"}]},
                 "valueQuantity": {"value": 70 + n % 20, "unit": "mmHg"}}]},
            "request": {"method": "PUT", "url": f"Observation/bp{n}"}})
    for n in range(20):
        entries.append({"resource": {
            "resourceType": "Condition", "id": f"c{n}", "subject": subject,
            "code": {"text": f"Problem {n}"}}, "request": {"method": "PUT",
                                                            "url": f"Condition/c{n}"}})
        entries.append({"resource": {
            "resourceType": "MedicationRequest", "id": f"m{n}", "status": "active",
            "intent": "order", "subject": subject, "medicationCodeableConcept": {
                "text": f"Drug {n}"}}, "request": {"method": "PUT",
                                                   "url": f"MedicationRequest/m{n}"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def timed(call: Any, runs: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU milliseconds (the whole process: the app runs in this process's
    threads) of ``runs`` calls."""
    wall, cpu = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        response = call()
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
        assert response.status_code == 200, response.text[:300]
    return wall, cpu


def summary(values: tuple[list[float], list[float]]) -> dict[str, float]:
    wall, cpu = sorted(values[0]), sorted(values[1])
    return {"median_ms": round(statistics.median(wall), 1),
            "p95_ms": round(wall[max(0, int(len(wall) * 0.95) - 1)], 1),
            "cpu_median_ms": round(statistics.median(cpu), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encounters", type=int, default=500)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(database_url=f"sqlite:///{Path(folder) / 'ui.db'}",
                            base_url="http://testserver", validate_writes=False)
        services = build_services(settings, validator=None)
        services.submit(records(args.encounters))
        services.security.accounts.add_user("doctor", "physician", PASSWORD)
        services.security.access.set_attribute("doctor", "practitioner", ["bench-dr"])
        client = TestClient(create_app(settings, services=services))
        page = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        client.post("/login", data={"username": "doctor", "password": PASSWORD,
                                    "csrf_token": token.group(1)})
        bearer = services.security.oauth.login("doctor", PASSWORD)["access_token"]
        chart = client.get("/patients/bench")
        assert chart.status_code == 200 and chart.text.count("<li><time>") >= min(
            args.encounters, 200), "the chart did not render the encounters"
        ui = timed(lambda: client.get("/patients/bench"), args.runs)
        api = timed(lambda: client.get("/fhir/Encounter", params={
            "patient": "Patient/bench", "_count": "1000"},
            headers={"Authorization": f"Bearer {bearer}"}), args.runs)
        services.close()
    result = {"benchmark": "ui_chart", "encounters": args.encounters,
              "observations": args.encounters * 2, "runs": args.runs,
              "chart_page": summary(ui), "reference_fhir_encounter_search": summary(api),
              "ratio_chart_to_reference": round(statistics.median(ui[0])
                                                / statistics.median(api[0]), 2),
              "load_average": [round(x, 2) for x in os.getloadavg()],
              "target_ms": 500, "bytes": len(chart.content)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
