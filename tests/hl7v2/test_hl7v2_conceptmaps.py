"""ConceptMap resources → the local-code translation table used by the mappers."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from medarchive.hl7v2 import MappingConfig, concept_map_table, map_message, parse_message

LOCAL = "urn:medarchive:hl7:cs:L"
LOINC = "http://loinc.org"


def concept_map(*elements: dict[str, Any], status: str = "active") -> dict[str, Any]:
    return {"resourceType": "ConceptMap", "status": status, "url": "http://example.org/cm",
            "group": [{"source": LOCAL, "target": LOINC, "element": list(elements)}]}


def test_first_usable_target_wins_and_unmatched_is_skipped() -> None:
    table = concept_map_table([
        concept_map({"code": "GLU", "target": [
            {"code": "x", "equivalence": "unmatched"},
            {"code": "2345-7", "display": "Glucose", "equivalence": "equivalent"},
            {"code": "9999-9", "equivalence": "equivalent"}]},
            {"code": "NA", "target": [{"equivalence": "disjoint", "code": "y"}]},
            {"code": "K", "target": [{"code": "2823-3", "equivalence": "wider"}]}),
        concept_map({"code": "GLU", "target": [{"code": "1111-1"}]}),  # later map: ignored
        concept_map({"code": "CA", "target": [{"code": "17861-6"}]}, status="retired"),
    ])
    assert table == {(LOCAL, "GLU"): (LOINC, "2345-7", "Glucose"),
                     (LOCAL, "K"): (LOINC, "2823-3", "")}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["resourceType", "status", "group", "source", "target", "element",
                         "code", "display", "equivalence"]), inner, max_size=4),
    max_leaves=20)


@given(st.lists(json_values, max_size=3))
def test_any_json_gives_a_table_of_strings_never_an_error(resources: list[Any]) -> None:
    table = concept_map_table(resources)
    for key, value in table.items():
        assert all(isinstance(part, str) for part in (*key, *value))
        assert key[0] and key[1] and value[0] and value[1]


def test_translation_is_added_beside_the_local_code() -> None:
    config = MappingConfig(concept_maps=concept_map_table([concept_map(
        {"code": "GLU", "target": [{"code": "2345-7", "display": "Glucose"}]})]))
    message = parse_message("\r".join([
        "MSH|^~\\&|LAB|HOSP|ARCH|MA|20240102030405||ORU^R01|C1|P|2.5.1",
        "PID|1||77^^^HOSP^MR||Doe^Jane",
        "OBR|1|P1|F1|PANEL^Panel^L",
        "OBX|1|NM|GLU^Glucose^L||5.5|mmol/L|||||F"]) + "\r")
    bundle = map_message(message, config).bundle
    [observation] = [e["resource"] for e in bundle["entry"]
                     if e["resource"]["resourceType"] == "Observation"]
    assert observation["code"]["coding"] == [
        {"system": LOCAL, "code": "GLU", "display": "Glucose"},
        {"system": LOINC, "code": "2345-7", "display": "Glucose"}]
