"""``hl7_concept_maps``: the gateway reads the named ConceptMaps from the store at start-up."""

from __future__ import annotations

import pytest

from medarchive.app import build_gateway, build_services
from medarchive.settings import Settings

URL = "http://hospital.example/fhir/ConceptMap/lab-local-to-loinc"
ORU = "\r".join([
    "MSH|^~\\&|LAB|HOSP|ARCH|MA|20240102030405||ORU^R01|CM1|P|2.5.1",
    "PID|1||77^^^HOSP^MR||Doe^Jane",
    "OBR|1|P1|F1|PANEL^Panel^L",
    "OBX|1|NM|GLU^Glucose^L||5.5|mmol/L|||||F"]) + "\r"


def test_gateway_translates_with_the_configured_concept_map(sql_url: str) -> None:
    url = sql_url
    services = build_services(Settings(database_url=url, auth="off"))
    services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {"resourceType": "ConceptMap", "url": URL, "status": "active",
                     "group": [{"source": "urn:medarchive:hl7:cs:L",
                                "target": "http://loinc.org",
                                "element": [{"code": "GLU", "target": [
                                    {"code": "2345-7", "display": "Glucose",
                                     "equivalence": "equivalent"}]}]}]},
        "request": {"method": "POST", "url": "ConceptMap"}}]})
    services.close()
    gateway, services = build_gateway(Settings(database_url=url, auth="off",
                                               hl7_concept_maps=URL))
    try:
        assert gateway.handle(ORU.encode()).code == "AA"
        [observation] = [v.resource() for v in services.store.changes(0, 100)
                         if v.resource_type == "Observation"]
        assert {"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"} in \
            observation["code"]["coding"]
    finally:
        gateway.close()
        services.close()
    with pytest.raises(ValueError, match="no ConceptMap"):
        build_gateway(Settings(database_url=url, auth="off",
                               hl7_concept_maps="http://nowhere.example/cm"))
