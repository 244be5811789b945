"""A plain ``$export`` (every current resource of its types) reads pages with one keyset query
of current versions; it must give exactly what the per-page searches give: each resource once,
at its current version, deletions and changes after the cut left out."""

from __future__ import annotations

from typing import Any

import pytest

from medarchive.service.bulk.export import Plan, stream


def exported(repository: Any, types: list[str], max_seq: int, page: int
             ) -> list[tuple[str, str, int]]:
    params = {"level": "system", "types": types, "type_filters": {}, "since": None}
    return [(v.resource_type, v.id, v.version_id)
            for v in stream(repository, params, after_seq=0, max_seq=max_seq, page=page)]


@pytest.mark.parametrize("page", [1, 3, 1000])
def test_plain_exports_read_like_searches(repository: Any, monkeypatch: pytest.MonkeyPatch,
                                          page: int) -> None:
    for n in range(8):
        repository.update({"resourceType": "Patient", "id": f"p{n}"}, "Patient", f"p{n}")
        repository.update({"resourceType": "Observation", "id": f"o{n}", "status": "final",
                           "code": {"text": "x"}}, "Observation", f"o{n}")
    repository.update({"resourceType": "Patient", "id": "p2", "gender": "male"}, "Patient",
                      "p2")
    repository.delete("Observation", "o5")
    cut = repository.last_seq()
    repository.update({"resourceType": "Patient", "id": "p3", "gender": "male"}, "Patient",
                      "p3")  # after the cut: p3 changed since, so not exported at all
    repository.update({"resourceType": "Patient", "id": "late"}, "Patient", "late")
    every = sorted(repository.spec.resource_types)
    found = {(types[0] if len(types) == 1 else "all"): exported(repository, types, cut, page)
             for types in (every, ["Patient"])}
    monkeypatch.setattr(Plan, "plain", lambda self: False)
    searched = {(types[0] if len(types) == 1 else "all"): exported(repository, types, cut, page)
                for types in (every, ["Patient"])}
    assert {k: sorted(v) for k, v in found.items()} == \
        {k: sorted(v) for k, v in searched.items()}
    assert all(len(set(v)) == len(v) for v in found.values())
    assert ("Patient", "p2", 2) in found["all"] and ("Observation", "o4", 1) in found["all"]
    assert not {"p3", "late", "o5"} & {rid for _, rid, _ in found["all"]}
    assert sorted(rid for _, rid, _ in found["Patient"]) == ["p0", "p1", "p2", "p4", "p5",
                                                             "p6", "p7"]
