"""The cost of relationship narrowing (docs/security.md "Relationships") on search and count.

One SQLite database (security on, encryption off) with ``--patients`` patients, each with one
Encounter (every tenth in progress in department ``dept-a``, so a physician of that department
is related to a tenth of them), three Observations, and a restricted (``R``) Observation for
every twentieth patient. Through ``Router.handle`` in-process, the same physician Actor runs
``Observation?_count=20`` and ``Observation?_summary=count`` with the relationship rule off
(label narrowing only) and on (the related patients' ids inside the query), alternating block
by block for ``--rounds`` rounds; the medians and the same-run ratio on/off are printed, plus
the time to work out the related patients once (a cache miss: after any write). Then, on the
store alone (no audit), milliseconds per page and per count for each way of expressing "about
a related patient" in the query: none, the ``_has`` clause the server uses, a chain to an
``_id`` list, one Compartment clause per patient, OR-ed references.

    python benchmarks/abac.py [--patients 2000] [--searches 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from medarchive.app import build_services
from medarchive.fhir.search.query import (
    AnyOf,
    Chain,
    Compartment,
    Predicate,
    ReferenceValue,
    SearchQuery,
    TokenValue,
)
from medarchive.security.actor import Actor
from medarchive.security.labels import CONFIDENTIALITY
from medarchive.security.scopes import parse_scopes
from medarchive.service.request import FhirRequest
from medarchive.settings import Settings

QUERIES = {"page": (("_count", "20"),), "count": (("_summary", "count"),)}


def seed(services: Any, patients: int) -> None:
    entries = []
    for i in range(patients):
        current = i % 10 == 0
        resources: list[dict[str, Any]] = [
            {"resourceType": "Patient", "id": f"p{i}"},
            {"resourceType": "Encounter", "id": f"e{i}",
             "status": "in-progress" if current else "finished",
             "class": {"code": "IMP"}, "subject": {"reference": f"Patient/p{i}"},
             "serviceProvider": {"reference": "Organization/dept-a" if current
                                 else "Organization/dept-b"}}]
        for k in range(3):
            resources.append({"resourceType": "Observation", "id": f"o{i}-{k}",
                              "status": "final", "code": {"text": "pulse"},
                              "subject": {"reference": f"Patient/p{i}"}})
        if i % 20 == 0:
            resources.append({"resourceType": "Observation", "id": f"o{i}-r", "status": "final",
                              "code": {"text": "note"}, "subject": {"reference": f"Patient/p{i}"},
                              "meta": {"security": [{"system": CONFIDENTIALITY, "code": "R"}]}})
        entries += [{"resource": r, "request": {"method": "PUT",
                                                "url": f"{r['resourceType']}/{r['id']}"}}
                    for r in resources]
    for start in range(0, len(entries), 2000):
        services.submit({"resourceType": "Bundle", "type": "transaction",
                         "entry": entries[start:start + 2000]})


def strategies(services: Any, abac: Any, actor: Actor, ids: list[str]) -> dict[str, Any]:
    """ms per page of 20 and per count for each way to narrow ``Observation`` to ``ids``."""
    from medarchive.security.abac import Decision
    from medarchive.security.actor import acting
    with acting(actor):
        decision = abac.decision()
    assert isinstance(decision, Decision)
    refs = tuple(ReferenceValue("Patient", i) for i in ids)
    by_id = Predicate("_id", "id", tuple(TokenValue(None, i) for i in ids))
    links = (("Observation", "subject"), ("Observation", "performer"))
    ways: dict[str, tuple[Any, ...]] = {
        "none": (),
        "has_clause": (abac._patient_clause("Observation", (), (), abac._related(decision)),),
        "chain_to_ids": (AnyOf((Chain("subject", "Patient", by_id),
                                Chain("performer", "Patient", by_id))),),
        "compartment_per_patient": (AnyOf(tuple(Compartment("Patient", i, links)
                                                for i in ids)),),
        "or_references": (AnyOf((Predicate("subject", "reference", refs),
                                 Predicate("performer", "reference", refs))),)}
    found: dict[str, Any] = {}
    for name, extra in ways.items():
        query = SearchQuery("Observation", extra, count=21)
        times = []
        for call in (services.store.search, services.store.count):
            start = time.perf_counter()
            for _ in range(5):
                call(query)
            times.append(round((time.perf_counter() - start) / 5 * 1000, 1))
        found[name] = {"page_ms": times[0], "count_ms": times[1],
                       "matches": services.store.count(query)}
    return found


def rate(services: Any, actor: Actor, query: tuple[tuple[str, str], ...], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        response = services.router.handle(FhirRequest("GET", "Observation", query), actor)
        assert response.status == 200
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(database_url=f"sqlite:///{Path(folder) / 'abac.db'}",
                            validate_writes=False, encryption="off")
        services = build_services(settings, validator=None)
        try:
            seed(services, args.patients)
            security = services.security
            security.access.set_attribute("dora", "department", ["dept-a"])
            abac = security.guard.abac
            dora = Actor("user", "dora", "physician", parse_scopes("user/*.cruds")[0])
            profile = security.access.profile("dora")
            start = time.perf_counter()
            related = abac.relations.related(profile)
            miss_ms = (time.perf_counter() - start) * 1000
            samples: dict[str, list[float]] = {}
            for _ in range(args.rounds):
                for name, query in QUERIES.items():
                    for rule in (False, True):
                        abac.relationship_required = rule
                        rate(services, dora, query, 10)  # warm up
                        key = f"{name}_{'on' if rule else 'off'}_per_s"
                        samples.setdefault(key, []).append(
                            rate(services, dora, query, args.searches))
            medians = {k: round(statistics.median(v), 1) for k, v in samples.items()}
            result: dict[str, Any] = {
                "patients": args.patients, "related": len(related),
                "relations_cache_miss_ms": round(miss_ms, 1), **medians}
            for name in QUERIES:
                result[f"{name}_ratio_pct"] = round(
                    100 * medians[f"{name}_on_per_s"] / medians[f"{name}_off_per_s"], 1)
            abac.relationship_required = True
            result["store_only"] = strategies(services, abac, dora, sorted(related))
            print(json.dumps(result, indent=2))
        finally:
            services.close()


if __name__ == "__main__":
    main()
