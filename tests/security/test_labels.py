"""Security labels (``meta.security`` R, V and v3-ActCode sensitivity codes) over HTTP, on
SQLite and PostgreSQL: labelled resources stay out of search, count, ``_include``,
``_revinclude``, compartment search, ``$everything`` and history for users without the
entitlement, reads answer 404, writes need the entitlement; entitled users see them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from http_env import FHIR_JSON, Env, bearer, open_env

from medarchive.security.labels import ACT_CODE, CONFIDENTIALITY, LABELS

PLAIN = "o-plain"
LABELLED = {"o-r": (CONFIDENTIALITY, "R"), "o-v": (CONFIDENTIALITY, "V"),
            "o-hiv": (ACT_CODE, "HIV"), "o-psy": (ACT_CODE, "PSYTHPN")}


def observation(id: str, patient: str, label: tuple[str, str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Observation", "id": id, "status": "final",
                            "code": {"text": "note"},
                            "subject": {"reference": f"Patient/{patient}"}}
    if label is not None:
        body["meta"] = {"security": [{"system": label[0], "code": label[1]}]}
    return body


def seed(env: Env) -> None:
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": "p1"},
        {"resourceType": "Patient", "id": "p-secret",
         "meta": {"security": [{"system": CONFIDENTIALITY, "code": "R"}]}},
        observation(PLAIN, "p1"), observation("o-of-secret", "p-secret")]
    resources += [observation(id, "p1", label) for id, label in LABELLED.items()]
    env.services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in resources]})


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        spec: Any) -> Iterator[Env]:
    folder = tmp_path_factory.mktemp(f"labels-{request.param}")
    with open_env(request, request.param, folder, spec) as built:
        seed(built)
        yield built


def user(env: Env, name: str, *labels: str) -> dict[str, str]:
    """Headers of an administrator ``name`` entitled to exactly ``labels``."""
    access = env.services.security.access
    access.revoke(name, sorted(LABELS))
    access.entitle(name, labels)
    return bearer(env.token(role="administrator", scope="user/*.cruds", subject=name))


def ids(bundle: dict[str, Any], mode: str | None = None) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry") or ()
            if "resource" in e and (mode is None or e["search"]["mode"] == mode)}


def get(env: Env, path: str, headers: dict[str, str]) -> Any:
    return env.client.get("/fhir/" + path, headers=headers)


def test_search_and_counts_leave_labelled_out(env: Env) -> None:
    who = user(env, "ann")
    found = get(env, "Observation?subject=Patient/p1", who).json()
    assert ids(found) == {PLAIN} and found["total"] == 1
    assert get(env, "Observation?subject=Patient/p1&_summary=count", who).json()["total"] == 1
    assert get(env, "Observation?_total=accurate&_count=1", who).json()["total"] == 2
    assert ids(get(env, "Patient", who).json()) == {"p1"}
    assert ids(get(env, "?_type=Observation,Patient", who).json()) == {
        "p1", PLAIN, "o-of-secret"}


def test_include_revinclude_compartment_everything(env: Env) -> None:
    who = user(env, "ann")
    included = get(env, "Observation?_id=o-of-secret&_include=Observation:subject", who).json()
    assert ids(included) == {"o-of-secret"}
    rev = get(env, "Patient?_id=p1&_revinclude=Observation:subject", who).json()
    assert ids(rev, "include") == {PLAIN}
    compartment = get(env, "Patient/p1/Observation", who).json()
    assert ids(compartment) == {PLAIN} and compartment["total"] == 1
    assert ids(get(env, "Patient/p1/*", who).json()) == {PLAIN}
    everything = get(env, "Patient/p1/$everything", who).json()
    assert ids(everything) == {"p1", PLAIN} and everything["total"] == 2
    assert get(env, "Patient/p-secret/$everything", who).status_code == 404


def test_reads_vreads_history_answer_404(env: Env) -> None:
    who = user(env, "ann")
    for id in LABELLED:
        assert get(env, f"Observation/{id}", who).status_code == 404
        assert get(env, f"Observation/{id}/_history/1", who).status_code == 404
        assert get(env, f"Observation/{id}/_history", who).status_code == 404
    assert get(env, "Patient/p-secret", who).status_code == 404
    history = get(env, "Observation/_history", who).json()
    assert {e["resource"]["id"] for e in history["entry"]} == {PLAIN, "o-of-secret"}
    assert "total" not in history
    assert get(env, f"Observation/{PLAIN}", who).status_code == 200


def test_entitled_users_see_their_labels(env: Env) -> None:
    restricted = user(env, "rita", "R")
    assert ids(get(env, "Observation?subject=Patient/p1", restricted).json()) == {PLAIN, "o-r"}
    assert get(env, "Patient/p-secret", restricted).status_code == 200
    very = user(env, "vera", "V", "HIV")  # V includes R
    assert ids(get(env, "Observation?subject=Patient/p1", very).json()) == {
        PLAIN, "o-r", "o-v", "o-hiv"}
    assert get(env, "Observation/o-hiv/_history/1", very).status_code == 200
    everyone = user(env, "eve", "V", "HIV", "PSYTHPN")
    assert get(env, "Observation?subject=Patient/p1&_summary=count",
               everyone).json()["total"] == 5


def test_writes_need_the_entitlement(env: Env) -> None:
    body = observation("new-hiv", "p1", (ACT_CODE, "HIV"))
    del body["id"]
    headers = {"Content-Type": FHIR_JSON}
    refused = env.client.post("/fhir/Observation", json=body,
                              headers={**user(env, "ann"), **headers})
    assert refused.status_code == 403
    assert refused.json()["resourceType"] == "OperationOutcome"
    hidden = observation("o-hiv", "p1")  # overwriting a hidden resource is refused too
    assert env.client.put("/fhir/Observation/o-hiv", json=hidden,
                          headers={**user(env, "ann"), **headers}).status_code == 403
    allowed = env.client.post("/fhir/Observation", json=body,
                              headers={**user(env, "hugo", "HIV"), **headers})
    assert allowed.status_code == 201


def test_chains_and_has_never_test_hidden_resources(env: Env) -> None:
    has_hiv = f"Patient?_has:Observation:subject:_security={ACT_CODE}|HIV"
    chain_r = f"Observation?subject:Patient._security={CONFIDENTIALITY}|R"
    ann = user(env, "ann")
    assert ids(get(env, has_hiv, ann).json()) == set()
    assert ids(get(env, chain_r, ann).json()) == set()
    assert ids(get(env, has_hiv, user(env, "hugo", "HIV")).json()) == {"p1"}
    assert ids(get(env, chain_r, user(env, "rita", "R")).json()) == {"o-of-secret"}


def test_labels_of_the_current_version_govern_older_versions(env: Env) -> None:
    """A resource labelled after it was first stored: its older, unlabelled versions are
    hidden like the current one (vread, instance and type history), from users without the
    entitlement; entitled users still read them."""
    for label in (None, (ACT_CODE, "HIV")):
        env.services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": observation("o-later", "p-secret", label),
             "request": {"method": "PUT", "url": "Observation/o-later"}}]})
    ann = user(env, "ann")
    assert get(env, "Observation/o-later/_history/1", ann).status_code == 404
    assert get(env, "Observation/o-later/_history/2", ann).status_code == 404
    assert get(env, "Observation/o-later/_history", ann).status_code == 404
    history = get(env, "Observation/_history", ann).json()
    assert "o-later" not in {e["resource"]["id"] for e in history["entry"]}
    hugo = user(env, "hugo", "HIV")
    assert get(env, "Observation/o-later/_history/1", hugo).status_code == 200
    assert len(get(env, "Observation/o-later/_history", hugo).json()["entry"]) == 2
