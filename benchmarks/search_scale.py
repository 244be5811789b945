"""A 2-million-resource search store in minutes: synthetic rows written straight to the tables.

Loading 2M generated resources through the write path (extraction, validation-free bulk
writes) takes hours on a shared 2-core machine; the shape of a search plan at that scale does
not need it. This script writes ``resource``, ``resource_version`` and the index tables
(``idx_token``, ``idx_string``, ``idx_reference``, ``idx_date``, ``idx_date_sort``,
``idx_param``) directly, with the same columns the indexer writes, for N patients of 198
resources each (12 encounters, 150 observations, 20 conditions, 15 medication requests) plus
200 practitioners and one organization. One LOINC code is on 15 % of the observations (the
"common token"), the others follow a long tail. The result is an ordinary MedArchive
database: ``benchmarks/search.py --url URL`` times its workloads on it.

    python benchmarks/search_scale.py --backend sqlite --patients 10000     # ~2M resources
    python benchmarks/search_scale.py --backend postgresql --patients 10000
    python benchmarks/search.py --url URL --runs 100 --only summary_count_common,everything

SQLite goes to ``--data/synthetic-N.db``, PostgreSQL to schema ``bench_synthetic_N`` of the
test database. An existing data set is kept (``--replace`` writes it again).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from search import analyze, database_url  # benchmarks/search.py, beside this script

from medarchive.fhir.search.dates import date_range
from medarchive.fhir.search.index import build_indexer
from medarchive.fhir.spec import load_spec
from medarchive.store import open_store
from medarchive.store.sql.datesort import span_class
from medarchive.store.sql.indexing import COLUMNS, INDEX_TABLES, _insert
from medarchive.store.sql.store import SqlStore

ROOT = Path(__file__).resolve().parents[1]
LOINC, SNOMED, RXNORM = "http://loinc.org", "http://snomed.info/sct", \
    "http://www.nlm.nih.gov/research/umls/rxnorm"
MRN = "http://hospital.example.org/mrn"
PRACTITIONERS = 200
PER_PATIENT = {"Encounter": 12, "Observation": 150, "Condition": 20, "MedicationRequest": 15}
LOINC_CODES = [f"{1000 + n}-{n % 10}" for n in range(60)]
LOINC_WEIGHTS = [15.0] + [85.0 / 59] * 59  # the first code: 15 % of observations
SNOMED_CODES = [str(100000 + n * 7) for n in range(300)]
RX_CODES = [str(200000 + n * 3) for n in range(150)]
FAMILIES = ["Smith", "Jones", "Garcia", "Miller", "Davis", "Martinez", "Lopez", "Wilson",
            "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez",
            "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson"]
WHEN = 1_700_000_000_000_000
DAY = 86_400_000_000


class Rows:
    """Rows of every table for one batch of resources."""

    def __init__(self) -> None:
        self.resources: list[tuple[Any, ...]] = []
        self.versions: list[tuple[Any, ...]] = []
        self.index: dict[str, list[tuple[Any, ...]]] = {table: [] for table in INDEX_TABLES}

    def add(self, rid: int, rtype: str, rid_text: str, body: dict[str, Any],
            tokens: list[tuple[str, str | None, str]] = (),  # type: ignore[assignment]
            refs: list[tuple[str, str, str]] = (),  # type: ignore[assignment]
            strings: list[tuple[str, str]] = (),  # type: ignore[assignment]
            dates: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        self.resources.append((rid, rtype, rid_text, 1, WHEN, False))
        self.versions.append((rid, rid, 1, WHEN, False, orjson.dumps(body), None))
        params: set[str] = set()
        for param, system, code in tokens:
            self.index["idx_token"].append((rid, rtype, param, system, code, None))
            params.add(param)
        for param, target_type, target_id in refs:
            self.index["idx_reference"].append((rid, rtype, param, target_type, target_id, None))
            params.add(param)
        for param, text in strings:
            self.index["idx_string"].append((rid, rtype, param, text.lower(), text))
            params.add(param)
        for param, day in dates:
            low, high = date_range(day)
            self.index["idx_date"].append((rid, rtype, param, low, high))
            self.index["idx_date_sort"].append((rid, rtype, param, low, high,
                                                span_class(low, high)))
            params.add(param)
        self.index["idx_param"] += [(rid, rtype, param) for param in sorted(params)]


def _day(rng: random.Random) -> str:
    return f"{rng.randint(2015, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _instant(rng: random.Random) -> str:
    return f"{_day(rng)}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z"


def shared(rows: Rows) -> int:
    """The organization and practitioners; returns the next rid."""
    rows.add(1, "Organization", "org1", {"resourceType": "Organization", "id": "org1",
                                         "name": "General Hospital"},
             strings=[("name", "General Hospital")])
    for n in range(PRACTITIONERS):
        family = FAMILIES[n % len(FAMILIES)] + str(n)
        rows.add(2 + n, "Practitioner", f"pr{n}",
                 {"resourceType": "Practitioner", "id": f"pr{n}", "name": [{"family": family}]},
                 strings=[("family", family), ("name", family)])
    return 2 + PRACTITIONERS


def patient(rows: Rows, rid: int, n: int, rng: random.Random) -> int:
    """One patient and its records from ``rid``; returns the next rid."""
    pid, family = f"p{n}", rng.choice(FAMILIES)
    subject = [("subject", "Patient", pid), ("patient", "Patient", pid)]
    rows.add(rid, "Patient", pid, {"resourceType": "Patient", "id": pid,
                                   "identifier": [{"system": MRN, "value": f"MRN{n:07d}"}],
                                   "name": [{"family": family}], "birthDate": "1970-01-01",
                                   "managingOrganization": {"reference": "Organization/org1"}},
             tokens=[("identifier", MRN, f"MRN{n:07d}"),
                     ("gender", "http://hl7.org/fhir/administrative-gender", "female")],
             refs=[("organization", "Organization", "org1")],
             strings=[("family", family), ("name", family)], dates=[("birthdate", "1970-01-01")])
    rid += 1
    encounters = []
    for j in range(PER_PATIENT["Encounter"]):
        eid, doctor = f"e{n}-{j}", f"pr{rng.randrange(PRACTITIONERS)}"
        encounters.append(eid)
        rows.add(rid, "Encounter", eid, {
            "resourceType": "Encounter", "id": eid, "status": "finished",
            "subject": {"reference": f"Patient/{pid}"},
            "participant": [{"individual": {"reference": f"Practitioner/{doctor}"}}],
            "serviceProvider": {"reference": "Organization/org1"}},
            tokens=[("status", "http://hl7.org/fhir/encounter-status", "finished")],
            refs=[*subject, ("participant", "Practitioner", doctor),
                  ("practitioner", "Practitioner", doctor),
                  ("service-provider", "Organization", "org1")],
            dates=[("date", _day(rng))])
        rid += 1
    for j in range(PER_PATIENT["Observation"]):
        oid, code = f"o{n}-{j}", rng.choices(LOINC_CODES, LOINC_WEIGHTS)[0]
        encounter = rng.choice(encounters)
        rows.add(rid, "Observation", oid, {
            "resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "subject": {"reference": f"Patient/{pid}"},
            "encounter": {"reference": f"Encounter/{encounter}"}},
            tokens=[("code", LOINC, code), ("status", "http://hl7.org/fhir/observation-status",
                                            "final"),
                    ("category", "http://terminology.hl7.org/CodeSystem/observation-category",
                     "vital-signs" if code == LOINC_CODES[0] else "laboratory")],
            refs=[*subject, ("encounter", "Encounter", encounter)],
            dates=[("date", _instant(rng))])
        rid += 1
    for j in range(PER_PATIENT["Condition"]):
        cid, code = f"c{n}-{j}", rng.choice(SNOMED_CODES)
        encounter = rng.choice(encounters)
        rows.add(rid, "Condition", cid, {
            "resourceType": "Condition", "id": cid,
            "code": {"coding": [{"system": SNOMED, "code": code}]},
            "subject": {"reference": f"Patient/{pid}"},
            "encounter": {"reference": f"Encounter/{encounter}"}},
            tokens=[("code", SNOMED, code)],
            refs=[*subject, ("encounter", "Encounter", encounter)],
            dates=[("onset-date", _day(rng))])
        rid += 1
    for j in range(PER_PATIENT["MedicationRequest"]):
        mid, code, doctor = f"m{n}-{j}", rng.choice(RX_CODES), \
            f"pr{rng.randrange(PRACTITIONERS)}"
        encounter = rng.choice(encounters)
        rows.add(rid, "MedicationRequest", mid, {
            "resourceType": "MedicationRequest", "id": mid, "status": "active",
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code}]},
            "subject": {"reference": f"Patient/{pid}"},
            "encounter": {"reference": f"Encounter/{encounter}"},
            "requester": {"reference": f"Practitioner/{doctor}"}},
            tokens=[("code", RXNORM, code), ("status", "http://hl7.org/fhir/CodeSystem/"
                                                       "medicationrequest-status", "active")],
            refs=[*subject, ("encounter", "Encounter", encounter),
                  ("requester", "Practitioner", doctor)],
            dates=[("authoredon", _day(rng))])
        rid += 1
    return rid


def batches(patients: int, seed: int, size: int = 100) -> Iterator[Rows]:
    rng = random.Random(seed)
    rows = Rows()
    rid = shared(rows)
    for n in range(patients):
        rid = patient(rows, rid, n, rng)
        if (n + 1) % size == 0:
            yield rows
            rows = Rows()
    if rows.resources:
        yield rows


def write(store: SqlStore, rows: Rows) -> None:
    sql = store.db.sql
    with store.db.writing() as cur:
        _insert(cur, sql, "resource", "rid, res_type, res_id, version, last_updated, deleted",
                rows.resources)
        _insert(cur, sql, "resource_version",
                "seq, rid, version, last_updated, deleted, body, kid", rows.versions)
        for table in INDEX_TABLES:
            _insert(cur, sql, table, COLUMNS[table], rows.index[table])


def load(url: str, patients: int, seed: int, replace: bool) -> dict[str, Any]:
    store = open_store(url, build_indexer(load_spec()))
    assert isinstance(store, SqlStore)
    try:
        if store.last_seq() > 0 and not replace:
            return {"loaded": False}
        with store.db.writing() as cur:
            for table in ["resource_version", "resource", *INDEX_TABLES]:
                cur.execute(f"DELETE FROM {table}")
        started, count = time.perf_counter(), 0
        for rows in batches(patients, seed):
            write(store, rows)
            count += len(rows.resources)
        if store.db.dialect == "postgresql":  # later writes must not reuse synthetic rids
            with store.db.writing() as cur:
                cur.execute("SELECT setval(pg_get_serial_sequence('resource', 'rid'), "
                            "(SELECT MAX(rid) FROM resource))")
                cur.execute("SELECT setval(pg_get_serial_sequence('resource_version', 'seq'), "
                            "(SELECT MAX(seq) FROM resource_version))")
        loaded = time.perf_counter() - started
        analyze(store)
        return {"loaded": True, "resources": count, "load_seconds": round(loaded, 1),
                "analyze_seconds": round(time.perf_counter() - started - loaded, 1)}
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=ROOT / "benchmarks" / ".data")
    parser.add_argument("--replace", action="store_true", help="write the data set again")
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    url = database_url(args.backend, args.patients, args.data, "synthetic")
    print(json.dumps({"url": url, **load(url, args.patients, args.seed, args.replace)}))


if __name__ == "__main__":
    main()
