"""Search latency on generated patients, beside hand-written SQL over the same index tables.

Loads ``medarchive.demo.generate_ndjson(N, seed)`` through the SQL store with the real R4
indexer (extraction runs in ``--workers`` processes, writes in the store's own transactions),
then times each search workload through ``service.search_engine`` (the path the REST layer
uses: parse, store query, includes, total) and, where it applies, the same query shape written
by hand against the index tables: the floor the database sets. ``http_path`` times a few of
them through ``Router.handle`` as the REST layer calls it (authorization narrowing, Bundle
rendering to bytes; no socket, security off). Prints one JSON object.

    python benchmarks/search.py --backend sqlite --patients 1000 --load
    python benchmarks/search.py --backend postgresql --patients 1000 --load --runs 200

The database is kept between runs (``--data`` folder for SQLite, schema ``bench_search_<N>`` for
PostgreSQL); ``--load`` loads it only when it is empty.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from medarchive.demo import generate_ndjson
from medarchive.fhir.search.entries import IndexEntries
from medarchive.fhir.search.index import Indexer, build_indexer
from medarchive.fhir.spec import load_spec
from medarchive.service.repository import Repository
from medarchive.service.request import FhirRequest
from medarchive.service.router import Limits, Router
from medarchive.service.search_engine import everything, execute_search
from medarchive.store import open_store
from medarchive.store.base import Change, Store, from_micros
from medarchive.store.sql.store import SqlStore

PG = "postgresql://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parents[1]
CHUNK = 4000
SLOW = {"date_range_sorted"}  # linear in the matches (see docs/search.md): fewer runs
SLOW_RUNS = 20
_WORKER_INDEXER: Indexer | None = None


def _index_chunk(chunk: list[dict[str, Any]]) -> list[IndexEntries]:
    global _WORKER_INDEXER
    if _WORKER_INDEXER is None:
        _WORKER_INDEXER = build_indexer(load_spec())
    return [_WORKER_INDEXER(resource) for resource in chunk]


class Prepared:
    """The store's indexer during the load: entries computed by the worker processes."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], IndexEntries] = {}

    def __call__(self, resource: dict[str, Any]) -> IndexEntries:
        return self.entries.pop((resource["resourceType"], resource["id"]))


def _chunks(patients: int, seed: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for resource in generate_ndjson(patients, seed=seed):
        chunk.append(resource)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def database_url(backend: str, patients: int, data: Path, name: str = "search") -> str:
    """The data set's file (``--data/NAME-N.db``) or schema (``bench_NAME_N``)."""
    if backend == "sqlite":
        return f"sqlite:///{data / f'{name}-{patients}.db'}"
    import psycopg
    schema = f"bench_{name}_{patients}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    return f"{PG}?options=-csearch_path%3D{schema}"


def load(url: str, patients: int, seed: int, workers: int) -> dict[str, Any]:
    """Load the generated patients unless the database already holds resources."""
    prepared = Prepared()
    store = open_store(url, prepared)
    try:
        if store.last_seq() > 0:
            return {"loaded": False}
        start = time.perf_counter()
        count = 0
        when = from_micros(1_700_000_000_000_000)
        with multiprocessing.Pool(workers) as pool:
            pending: deque[tuple[list[dict[str, Any]], Any]] = deque()
            for chunk in _chunks(patients, seed):
                pending.append((chunk, pool.apply_async(_index_chunk, (chunk,))))
                if len(pending) > workers * 2:  # bounded read-ahead: memory stays flat
                    count += _write(store, prepared, *pending.popleft(), when)
            while pending:
                count += _write(store, prepared, *pending.popleft(), when)
        elapsed = time.perf_counter() - start
        analyze(store)
        return {"loaded": True, "resources": count, "seconds": round(elapsed, 1),
                "resources_per_second": round(count / elapsed)}
    finally:
        store.close()


def _write(store: Store, prepared: Prepared, chunk: list[dict[str, Any]], result: Any,
           when: Any) -> int:
    for resource, found in zip(chunk, result.get(), strict=True):
        prepared.entries[(resource["resourceType"], resource["id"])] = found
    store.write([Change(r["resourceType"], r["id"], 1, 0, when, False, orjson.dumps(r), r)
                 for r in chunk])
    return len(chunk)


def analyze(store: Store) -> None:
    """Planner statistics (and, on PostgreSQL, the visibility map index-only scans need)."""
    assert isinstance(store, SqlStore)
    with store.db.reading() as cur:  # autocommit: VACUUM cannot run inside a transaction
        cur.execute("VACUUM ANALYZE" if store.db.dialect == "postgresql" else "ANALYZE")


class Sample:
    """Search values drawn from the loaded data, so every query finds something."""

    def __init__(self, store: SqlStore, seed: int) -> None:
        self.rng = random.Random(seed)
        with store.db.reading() as cur:
            cur.execute("SELECT res_id FROM resource WHERE res_type = 'Patient' ORDER BY rid")
            self.patients = [row[0] for row in cur.fetchall()]
            cur.execute("SELECT code FROM idx_token WHERE res_type = 'Patient' AND "
                        "param = 'identifier' AND system LIKE '%mrn'")
            self.mrns = [row[0] for row in cur.fetchall()]
            cur.execute("SELECT DISTINCT exact FROM idx_string WHERE res_type = 'Patient' AND "
                        "param = 'family'")
            self.families = sorted(row[0] for row in cur.fetchall())
            cur.execute("SELECT code, COUNT(*) FROM idx_token WHERE res_type = 'Observation' "
                        "AND param = 'code' AND system = 'http://loinc.org' GROUP BY code")
            counts = dict(cur.fetchall())
            self.codes = sorted(counts)
            self.top_code = max(counts, key=lambda code: counts[code])
            self.top_count = counts[self.top_code]
            cur.execute("SELECT DISTINCT code FROM idx_token WHERE res_type = 'Condition' AND "
                        "param = 'code' AND system = 'http://snomed.info/sct'")
            self.conditions = sorted(row[0] for row in cur.fetchall())
            cur.execute("SELECT DISTINCT exact FROM idx_string WHERE res_type = 'Practitioner' "
                        "AND param = 'family'")
            self.doctors = sorted(row[0] for row in cur.fetchall())

    def pick(self, values: list[str]) -> str:
        return self.rng.choice(values)

    def day(self) -> str:
        year, month, day = self.rng.randint(2015, 2024), self.rng.randint(1, 12), \
            self.rng.randint(1, 28)
        return f"{year}-{month:02d}-{day:02d}"


Workload = Callable[[Sample], tuple[str | None, list[tuple[str, str]]]]


def workloads() -> dict[str, Workload]:
    """name -> a function drawing one concrete search (resource type, parameters)."""
    return {
        "token_selective": lambda s: ("Patient", [("identifier", s.pick(s.mrns))]),
        "token_common": lambda s: ("Observation", [("code", f"http://loinc.org|{s.pick(s.codes)}")]),
        "date_day": lambda s: ("Encounter", [("date", s.day())]),
        "date_range_sorted": lambda s: ("Observation", [("date", f"ge{s.day()}"),
                                                        ("_sort", "date")]),
        "reference": lambda s: ("Observation", [("subject", f"Patient/{s.pick(s.patients)}")]),
        "string_prefix": lambda s: ("Patient", [("family", s.pick(s.families)[:3])]),
        "summary_count_common": lambda s: ("Observation", [
            ("code", f"http://loinc.org|{s.pick(s.codes)}"), ("_summary", "count")]),
        "summary_count_top": lambda s: ("Observation", [
            ("code", f"http://loinc.org|{s.top_code}"), ("_summary", "count")]),
        "total_top": lambda s: ("Observation", [
            ("code", f"http://loinc.org|{s.top_code}"), ("_total", "accurate")]),
        "summary_count_reference": lambda s: ("Observation", [
            ("subject", f"Patient/{s.pick(s.patients)}"), ("_summary", "count")]),
        "chain_one_level": lambda s: ("Observation", [
            ("subject:Patient.identifier", s.pick(s.mrns))]),
        "chain_two_level": lambda s: ("Observation", [
            ("encounter.subject:Patient.identifier", s.pick(s.mrns))]),
        "chain_common_target": lambda s: ("Encounter", [
            ("participant:Practitioner.family", s.pick(s.doctors)), ("_count", "20")]),
        "reverse_chain": lambda s: ("Patient", [
            ("_has:Condition:subject:code", s.pick(s.conditions))]),
        "include": lambda s: ("Encounter", [
            ("subject", f"Patient/{s.pick(s.patients)}"), ("_include", "Encounter:subject"),
            ("_include", "Encounter:participant"), ("_revinclude", "Condition:encounter")]),
        "deep_page": lambda s: ("Observation", [
            ("code", f"http://loinc.org|{s.top_code}"),
            ("_offset", str(s.rng.randint(s.top_count // 2, s.top_count - 20))),
            ("_total", "none")]),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(runs: int, call: Callable[[], Any]) -> dict[str, float]:
    """Wall-clock p50/p99/max, and this process's median CPU time (``cpu_p50_ms``: on a
    loaded machine the figure to compare; SQLite runs in-process, PostgreSQL's server is not
    in it)."""
    call()  # warm the caches once
    times, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        call()
        times.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return {"p50_ms": round(statistics.median(times), 2),
            "p99_ms": round(percentile(times, 0.99), 2),
            "max_ms": round(max(times), 2), "cpu_p50_ms": round(statistics.median(cpu), 2)}


def run(url: str, runs: int, seed: int, only: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Time every workload, or those named in ``only`` (workload names, ``everything*``,
    ``reference_sql``, ``http_path``)."""
    spec = load_spec()
    store = open_store(url, build_indexer(spec))
    assert isinstance(store, SqlStore)

    def wanted(name: str) -> bool:
        return not only or name in only
    try:
        sample = Sample(store, seed)
        results: dict[str, Any] = {}
        for name, draw in workloads().items():
            if not wanted(name):
                continue
            count = min(runs, SLOW_RUNS) if name in SLOW else runs
            queries = [draw(sample) for _ in range(count + 1)]
            found: list[int] = []

            def one(queries: list[Any] = queries, found: list[int] = found) -> None:
                rtype, params = queries[len(found) % len(queries)]
                result = execute_search(store, spec, rtype, params, default_count=20,
                                        max_count=1000, strict=True)
                found.append(len(result.matches) + len(result.included))
            results[name] = {**timed(count, one), "runs": count, "mean_results": round(
                statistics.mean(found), 1)}
        patients = sample.patients
        counter = [0]

        def everything_once() -> None:
            counter[0] += 1
            everything(store, spec, patients[counter[0] * 7919 % len(patients)], count=1000)
        if wanted("everything"):
            results["everything"] = timed(runs, everything_once)

        def two_passes_once() -> None:  # the same page and, apart, its count: the cost before
            counter[0] += 1  # a page that is not full gave its own total
            patient = patients[counter[0] * 7919 % len(patients)]
            everything(store, spec, patient, count=1000, total=False)
            everything(store, spec, patient, count=0)
        if wanted("everything_two_passes"):
            results["everything_two_passes"] = timed(runs, two_passes_once)

        def care_range_once() -> None:  # one patient, the records of one year (start/end)
            counter[0] += 1
            year = 2015 + counter[0] % 10
            everything(store, spec, patients[counter[0] * 7919 % len(patients)], count=1000,
                       start=f"{year}-01-01", end=f"{year}-12-31")

        def type_level_once() -> None:  # Patient/$everything: a page of 20, then page 50
            everything(store, spec, None, count=20, offset=20 * (counter[0] % 2) * 50,
                       total=False)
            counter[0] += 1
        if wanted("everything_care_range"):
            results["everything_care_range"] = timed(runs, care_range_once)
        if wanted("everything_type_level"):
            results["everything_type_level"] = timed(min(runs, 5), type_level_once)  # slow
        if wanted("reference_sql"):
            results["reference_sql"] = reference(store, sample, runs)
        if wanted("http_path"):
            results["http_path"] = http_path(store, spec, sample, runs)
        if wanted("date_sort"):
            results["date_sort"] = date_sort(store, spec, sample, runs)
        return results
    finally:
        store.close()


def date_sort_workloads() -> dict[str, Workload]:
    """Searches sorted by a date (docs/search.md, "Sorting by a date")."""
    return {
        "ge_ascending": lambda s: ("Observation", [("date", f"ge{s.day()}"), ("_sort", "date")]),
        "ge_descending": lambda s: ("Observation", [("date", f"ge{s.day()}"),
                                                    ("_sort", "-date")]),
        "le_descending": lambda s: ("Observation", [("date", f"le{s.day()}"),
                                                    ("_sort", "-date")]),
        "month_ascending": lambda s: ("Observation", [("date", s.day()[:7]), ("_sort", "date")]),
        "code_descending": lambda s: ("Observation", [
            ("code", f"http://loinc.org|{s.pick(s.codes)}"), ("_sort", "-date")]),
        "subject_descending": lambda s: ("Observation", [
            ("subject", f"Patient/{s.pick(s.patients)}"), ("_sort", "-date")]),
        "all_descending": lambda s: ("Encounter", [("_sort", "-date")]),
    }


def date_sort(store: SqlStore, spec: Any, sample: Sample, runs: int) -> dict[str, Any]:
    """Each date-sort workload with the ``idx_date_sort`` plan and with the plan that sorts
    every match (``SqlStore.date_index`` off: the same-run reference, ``SLOW_RUNS`` runs), the
    page alone (``_total=none``) and with the first page's total; wall and this process's CPU
    milliseconds (SQLite runs in-process, PostgreSQL in the server). Both plans must return
    the same ids for the same searches."""
    out: dict[str, Any] = {}
    for name, draw in date_sort_workloads().items():
        queries = [draw(sample) for _ in range(runs)]
        for total in ("none", "first_page"):
            extra = [("_total", "none")] if total == "none" else []
            row: dict[str, Any] = {}
            answers: dict[bool, dict[int, list[str]]] = {}
            for indexed in (True, False):
                count = runs if indexed else min(runs, SLOW_RUNS)
                store.date_index = indexed
                found: dict[int, list[str]] = {}
                cpu: list[float] = []

                def one(found: dict[int, list[str]] = found, cpu: list[float] = cpu,
                        count: int = count, queries: list[Any] = queries,
                        extra: list[tuple[str, str]] = extra) -> None:
                    n = len(cpu) % count
                    rtype, params = queries[n]
                    started = time.process_time()
                    result = execute_search(store, spec, rtype, [*params, *extra],
                                            default_count=20, max_count=1000, strict=True)
                    cpu.append((time.process_time() - started) * 1000)
                    found[n] = [v.id for v in result.matches]
                times = timed(count, one)
                answers[indexed] = found
                row["index" if indexed else "sort_all"] = {
                    **times, "cpu_p50_ms": round(statistics.median(cpu[1:]), 2), "runs": count}
            store.date_index = True
            assert all(answers[True][n] == ids for n, ids in answers[False].items()), name
            row["ratio_p50"] = round(row["sort_all"]["p50_ms"] / max(row["index"]["p50_ms"],
                                                                     0.001), 1)
            out[f"{name}/total={total}"] = row
    return out


def http_path(store: SqlStore, spec: Any, sample: Sample, runs: int) -> dict[str, Any]:
    """Workloads through the router: what a REST request costs minus HTTP itself."""
    repository = Repository(store, spec, new_id=lambda: "unused",
                            now=lambda: from_micros(1_700_000_000_000_000))
    router = Router(repository, base="http://bench/fhir",
                    limits=Limits(10_000_000, 100, 64, 20, 1000))
    draw = workloads()
    Shape = Callable[[], tuple[str, list[tuple[str, str]]]]

    def drawing(name: str) -> Shape:
        return lambda: _typed(draw[name](sample))
    shapes: dict[str, Shape] = {name: drawing(name) for name in (
        "token_common", "reference", "chain_two_level", "include")}
    shapes["everything"] = lambda: (f"Patient/{sample.pick(sample.patients)}/$everything",
                                    [("_count", "1000")])
    out = {}
    for name, make in shapes.items():
        def once(make: Any = make) -> None:
            path, params = make()
            response = router.handle(FhirRequest("GET", path, tuple(params)))
            assert response.status == 200, response.content()[:300]
            response.content()
        out[name] = timed(runs, once)
    return out


def _typed(drawn: tuple[str | None, list[tuple[str, str]]]) -> tuple[str, list[tuple[str, str]]]:
    rtype, params = drawn
    return rtype or "", params


def reference(store: SqlStore, sample: Sample, runs: int) -> dict[str, Any]:
    """Hand-written SQL with the same shape against the same index tables (the floor)."""
    sql = store.db.sql
    fetch = ("SELECT v.body FROM resource r JOIN resource_version v ON v.rid = r.rid AND "
             "v.version = r.version WHERE r.rid IN ({})")
    shapes = {
        "token_common": ("SELECT DISTINCT rid FROM idx_token WHERE res_type = 'Observation' "
                         "AND param = 'code' AND code = ? AND system = 'http://loinc.org' "
                         "ORDER BY rid LIMIT 21", lambda: [sample.pick(sample.codes)]),
        "reference": ("SELECT DISTINCT rid FROM idx_reference WHERE res_type = 'Observation' "
                      "AND param = 'subject' AND target_id = ? AND target_type = 'Patient' "
                      "ORDER BY rid LIMIT 21", lambda: [sample.pick(sample.patients)]),
        "date_day": ("SELECT DISTINCT rid FROM idx_date WHERE res_type = 'Encounter' AND "
                     "param = 'date' AND low >= ? AND high <= ? ORDER BY rid LIMIT 21",
                     lambda: list(_day_range(sample.day()))),
        "string_prefix": ("SELECT DISTINCT rid FROM idx_string WHERE res_type = 'Patient' AND "
                          "param = 'family' AND value >= ? AND value < ? ORDER BY rid LIMIT 21",
                          lambda: _prefix(sample.pick(sample.families)[:3])),
        "summary_count_common": ("SELECT COUNT(DISTINCT rid) FROM idx_token WHERE "
                                 "res_type = 'Observation' AND param = 'code' AND code = ? AND "
                                 "system = 'http://loinc.org'",
                                 lambda: [sample.pick(sample.codes)]),
        # the count of the most common code as counted before it skipped DISTINCT
        "summary_count_top_distinct": ("SELECT COUNT(DISTINCT rid) FROM idx_token WHERE "
                                       "res_type = 'Observation' AND param = 'code' AND "
                                       "code = ? AND system = 'http://loinc.org'",
                                       lambda: [sample.top_code]),
    }
    out = {}
    for name, (statement, params) in shapes.items():
        def once(statement: str = statement, params: Any = params) -> None:
            with store.db.reading() as cur:
                cur.execute(sql(statement), params())
                rids = [row[0] for row in cur.fetchall()]
                if rids and "COUNT" not in statement:
                    cur.execute(sql(fetch.format(", ".join("?" * len(rids)))), rids)
                    cur.fetchall()
        out[name] = timed(runs, once)
    return out


def _day_range(day: str) -> tuple[int, int]:
    from medarchive.fhir.search.dates import date_range
    return date_range(day)


def _prefix(text: str) -> list[str]:
    from medarchive.fhir.search.normalize import normalize_string
    value = normalize_string(text)
    return [value, value + "\U0010ffff"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=ROOT / "benchmarks" / ".data")
    parser.add_argument("--load", action="store_true", help="load the data set if empty")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--only", default="", help="comma-separated workloads to time "
                                                   "(default: all)")
    parser.add_argument("--url", help="time this database instead (benchmarks/search_scale.py "
                                      "prints the URL of its synthetic data sets)")
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    url = args.url or database_url(args.backend, args.patients, args.data)
    report: dict[str, Any] = {"backend": args.backend, "patients": args.patients,
                              "runs": args.runs}
    if args.load:
        report["load"] = load(url, args.patients, args.seed, args.workers)
    store = open_store(url, build_indexer(load_spec()))
    report["resources"] = store.count(__import__("medarchive.fhir.search.query",
                                                 fromlist=["SearchQuery"]).SearchQuery(None))
    store.close()
    report["search"] = run(url, args.runs, args.seed,
                           frozenset(name for name in args.only.split(",") if name))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
