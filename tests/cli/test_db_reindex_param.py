"""``medarchive db reindex --param``: one search parameter's rows rebuilt, the others left
alone; a SearchParameter stored in the record becomes searchable; a job killed with SIGKILL
resumes without losing or doubling rows (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner, Result

from medarchive.app import build_services
from medarchive.cli.main import app
from medarchive.fhir.search.custom import only_param, with_custom_params
from medarchive.fhir.search.index import build_indexer
from medarchive.fhir.search.parse import parse_search
from medarchive.service.search_engine import execute_search, stored_search_params
from medarchive.settings import load_settings
from medarchive.store import open_store
from medarchive.store.base import Change
from medarchive.store.sql.paramindex import param_entries
from medarchive.store.sql.store import SqlStore

BACKENDS = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
WHEN = datetime(2024, 1, 1, tzinfo=UTC)
EYES = "http://example.org/fhir/StructureDefinition/eye-colour"
EYE_PARAM = {"resourceType": "SearchParameter", "id": "eye-colour", "status": "active",
             "url": "http://example.org/fhir/SearchParameter/eye-colour", "name": "EyeColour",
             "code": "eye-colour", "base": ["Patient", "RelatedPerson"], "type": "token",
             "description": "Eye colour",
             "expression": f"Patient.extension.where(url = '{EYES}').value | "
                           f"RelatedPerson.extension.where(url = '{EYES}').value"}


PLAIN = {"MEDARCHIVE_ENCRYPTION": "off"}  # the stores of these tests do not encrypt


def run(database_url: str, *args: str) -> Result:
    return CliRunner(env=PLAIN).invoke(app, ["--database-url", database_url, "db", "reindex",
                                             *args])


def write(store: Any, resources: list[dict[str, Any]]) -> None:
    store.write([Change(r["resourceType"], r["id"], 1, 0, WHEN, False, orjson.dumps(r), r)
                 for r in resources])


def patients(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"resourceType": "Patient", "id": f"p{n}", "gender": "female",
             "birthDate": "1980-02-03", "name": [{"family": f"Doe{n}"}],
             "extension": [{"url": EYES, "valueCode": "blue" if n % 2 else "brown"}]}
            for n in range(start, start + count)]


def rows(store: SqlStore, table: str, param: str | None = None) -> int:
    with store.db.reading() as cur:
        if param is None:
            cur.execute(f"SELECT COUNT(*) FROM {table}")
        else:
            cur.execute(store.db.sql(f"SELECT COUNT(*) FROM {table} WHERE param = ?"), (param,))
        return int(cur.fetchone()[0])


def count(store: Any, spec: Any, rtype: str, name: str, value: str) -> int:
    query = parse_search(spec, rtype, [(name, value)], default_count=100, max_count=100).query
    return int(store.count(query))


@BACKENDS
def test_only_the_parameters_rows_are_rebuilt(database_url: str, spec: Any,
                                              indexer: Any) -> None:
    store = open_store(database_url, indexer)
    try:
        assert isinstance(store, SqlStore)
        write(store, patients(5))
        before = {t: rows(store, t) for t in ("idx_token", "idx_string", "idx_date",
                                              "idx_param", "idx_date_sort")}
        with store.db.writing() as cur:
            cur.execute("DELETE FROM idx_token WHERE param = 'gender'")
            cur.execute("DELETE FROM idx_param WHERE param = 'gender'")
            cur.execute("DELETE FROM idx_date WHERE param = 'birthdate'")
        assert count(store, spec, "Patient", "gender", "female") == 0
        result = run(database_url, "--param", "gender", "--batch", "2")
        assert result.exit_code == 0, result.output
        assert "reindexed 5 resources (job 'reindex@gender')" in result.output
        assert count(store, spec, "Patient", "gender", "female") == 5
        assert count(store, spec, "Patient", "gender:missing", "false") == 5
        assert rows(store, "idx_token", "gender") == 5  # rebuilt once, not doubled
        assert rows(store, "idx_date", "birthdate") == 0  # other parameters left alone
        assert rows(store, "idx_token") == before["idx_token"]
        assert rows(store, "idx_string") == before["idx_string"]
        assert rows(store, "idx_date_sort") == before["idx_date_sort"]  # birthdate's kept
        again = run(database_url, "--param", "gender")
        assert again.exit_code == 0 and "already finished" in again.output
    finally:
        store.close()


@BACKENDS
def test_modifier_rows_and_dates_come_back_with_their_parameter(database_url: str, spec: Any,
                                                                indexer: Any) -> None:
    store = open_store(database_url, indexer)
    try:
        assert isinstance(store, SqlStore)
        write(store, patients(3))
        family = rows(store, "idx_string", "family")
        with store.db.writing() as cur:
            for table in ("idx_date", "idx_date_sort", "idx_param", "idx_string"):
                cur.execute(f"DELETE FROM {table} WHERE param IN ('birthdate', 'family')")
        result = run(database_url, "--param", "birthdate", "--type", "Patient")
        assert result.exit_code == 0, result.output
        assert "job 'reindex:Patient@birthdate'" in result.output
        assert count(store, spec, "Patient", "birthdate", "1980-02") == 3
        assert rows(store, "idx_date_sort", "birthdate") == 3
        assert rows(store, "idx_string", "family") == 0
        assert run(database_url, "--param", "family").exit_code == 0
        assert rows(store, "idx_string", "family") == family
    finally:
        store.close()


@BACKENDS
def test_a_union_parameters_old_rows_are_deleted(database_url: str, spec: Any,
                                                 indexer: Any) -> None:
    """``combo-code`` is searched through ``code`` and ``component-code``
    (``fhir.search.unions``): its reindex deletes the rows earlier versions wrote under its
    name and writes none."""
    store = open_store(database_url, indexer)
    try:
        assert isinstance(store, SqlStore)
        write(store, [{"resourceType": "Observation", "id": f"o{n}", "status": "final",
                       "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}}
                      for n in range(3)])
        assert rows(store, "idx_token", "combo-code") == 0
        tokens = rows(store, "idx_token")
        with store.db.writing() as cur:  # as an earlier version wrote them
            cur.execute(store.db.sql(
                "INSERT INTO idx_token (rid, res_type, param, system, code, display) "
                "SELECT rid, res_type, 'combo-code', system, code, display FROM idx_token "
                "WHERE param = 'code'"))
            cur.execute(store.db.sql(
                "INSERT INTO idx_string (rid, res_type, param, value, exact) "
                "SELECT rid, res_type, 'combo-code:text', value, exact FROM idx_string "
                "WHERE param = 'code:text'"))
        assert rows(store, "idx_token", "combo-code") == 3
        result = run(database_url, "--param", "combo-code")
        assert result.exit_code == 0, result.output
        assert rows(store, "idx_token", "combo-code") == 0
        assert rows(store, "idx_string", "combo-code:text") == 0
        assert rows(store, "idx_token") == tokens
        assert count(store, spec, "Observation", "combo-code", "8867-4") == 3
    finally:
        store.close()


def test_a_parameters_entries_include_its_modifier_names(spec: Any, indexer: Any) -> None:
    observation = {"resourceType": "Observation", "id": "o1", "status": "final",
                   "code": {"text": "Heart rate",
                            "coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                   "subject": {"reference": "Patient/p1"}}
    found = param_entries(indexer(observation), "code")
    assert {e.param for e in found.tokens} == {"code"}
    assert {e.param for e in found.strings} == {"code:text"}
    assert found.params == {"code"} and not found.references
    narrowed = build_indexer(only_param(spec, "code"), full_text=False)(observation)
    assert narrowed == found  # the narrowed indexer runs that parameter's expression only


@BACKENDS
def test_a_stored_search_parameter_becomes_searchable(database_url: str, spec: Any,
                                                      indexer: Any) -> None:
    store = open_store(database_url, indexer)
    try:
        assert isinstance(store, SqlStore)
        write(store, [*patients(6), EYE_PARAM, {
            "resourceType": "RelatedPerson", "id": "r1", "patient": {"reference": "Patient/p1"},
            "extension": [{"url": EYES, "valueCode": "blue"}]}])
        custom = stored_search_params(store, spec)
        assert custom is not spec
        assert count(store, custom, "Patient", "eye-colour", "blue") == 0  # not yet indexed
        result = run(database_url, "--param", "eye-colour", "--batch", "4")
        assert result.exit_code == 0, result.output
        assert "reindexed 7 resources (job 'reindex@eye-colour')" in result.output
        assert count(store, custom, "Patient", "eye-colour", "blue") == 3
        assert count(store, custom, "Patient", "eye-colour", "brown") == 3
        assert count(store, custom, "RelatedPerson", "eye-colour", "blue") == 1
        assert count(store, custom, "Patient", "gender", "female") == 6  # untouched
        restarted = run(database_url, "--restart")  # a whole reindex keeps the custom rows
        assert restarted.exit_code == 0, restarted.output
        assert count(store, custom, "Patient", "eye-colour", "blue") == 3
    finally:
        store.close()
    services = build_services(load_settings({"database_url": database_url, **{
        k.removeprefix("MEDARCHIVE_").lower(): v for k, v in PLAIN.items()}}), validator=None)
    try:  # a server started now indexes and searches it like an official parameter
        write(services.store, patients(1, start=7))  # p7: blue
        result = execute_search(services.store, services.spec, "Patient",
                                [("eye-colour", "blue")], default_count=20, max_count=100,
                                strict=True)
        assert result.total == 4 and not result.ignored
    finally:
        services.close()


def test_inactive_or_unusable_parameters_are_not_defined(spec: Any) -> None:
    retired = {**EYE_PARAM, "status": "retired"}
    no_expression = {**EYE_PARAM, "expression": ""}
    official = {**EYE_PARAM, "code": "gender"}  # the spec's own definition stays
    special = {**EYE_PARAM, "type": "special"}
    broken = {**EYE_PARAM, "expression": "Patient.extension.where(url = "}
    for resource in (retired, no_expression, official, special, broken):
        assert with_custom_params(spec, [resource]) is spec
    custom = with_custom_params(spec, [EYE_PARAM])
    assert "eye-colour" in custom.search_params("Patient")
    assert "eye-colour" not in custom.search_params("Observation")
    assert custom.search_params("Patient")["gender"] == spec.search_params("Patient")["gender"]
    assert custom.search_param_by_url(EYE_PARAM["url"]).code == "eye-colour"


def test_unknown_parameter_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'medarchive.db'}"
    result = run(url, "--param", "eye-colour")
    assert result.exit_code == 1 and "unknown search parameter 'eye-colour'" in result.output
    typed = run(url, "--param", "gender", "--type", "Observation")
    assert typed.exit_code == 1 and "of Observation" in typed.output


def _job(store: SqlStore, job: str) -> tuple[int, bool] | None:
    with store.db.reading() as cur:
        cur.execute(store.db.sql("SELECT done, finished FROM reindex_job WHERE job = ?"), (job,))
        row = cur.fetchone()
    return None if row is None else (int(row[0]), bool(row[1]))


@BACKENDS
def test_a_killed_job_resumes(database_url: str, spec: Any, indexer: Any) -> None:
    """SIGKILL mid-run (no cleanup at all): the rerun continues after the last committed
    batch and every resource ends with exactly its rows."""
    store = open_store(database_url, indexer)
    total = 1500
    try:
        assert isinstance(store, SqlStore)
        for start in range(0, total, 500):
            write(store, patients(500, start))
        with store.db.writing() as cur:
            cur.execute("DELETE FROM idx_token WHERE param = 'gender'")
        command = [sys.executable, "-c", "from medarchive.cli.main import main; main()",
                   "--database-url", database_url, "db", "reindex", "--param", "gender",
                   "--batch", "1"]
        with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ, **PLAIN}) as child:
            deadline = time.monotonic() + 120
            while (state := _job(store, "reindex@gender")) is None or state[0] < 20:
                assert child.poll() is None, child.stderr.read() if child.stderr else ""
                assert time.monotonic() < deadline
                time.sleep(0.01)
            child.send_signal(signal.SIGKILL)
            child.wait()
        assert child.returncode == -signal.SIGKILL
        killed = _job(store, "reindex@gender")
        assert killed is not None and not killed[1] and 20 <= killed[0] < total
        assert rows(store, "idx_token", "gender") == killed[0]  # committed batches only
        result = run(database_url, "--param", "gender", "--batch", "200")
        assert result.exit_code == 0, result.output
        assert f"reindexed {total} resources" in result.output
        with store.db.reading() as cur:
            cur.execute("SELECT COUNT(*), COUNT(DISTINCT rid) FROM idx_token "
                        "WHERE param = 'gender'")
            assert tuple(cur.fetchone()) == (total, total)
        assert count(store, spec, "Patient", "gender", "female") == total
    finally:
        store.close()
