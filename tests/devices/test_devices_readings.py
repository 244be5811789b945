"""The reading parser: every input either becomes a complete Observation or is refused."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medarchive.devices.readings import KINDS, parse_reading, to_observation
from medarchive.errors import Unprocessable

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=3), max_leaves=8)
readings = st.fixed_dictionaries({}, optional={
    "device": st.text(max_size=10) | json_values,
    "kind": st.sampled_from([*KINDS, "mood"]) | json_values,
    "value": st.floats(allow_nan=True) | st.integers(-10, 400) | json_values,
    "systolic": st.integers(0, 400), "diastolic": st.integers(0, 400),
    "unit": st.sampled_from(["/min", "%", "Cel", "[degF]", "mmol/L", "kg"]),
    "time": st.sampled_from(["2024-05-01T12:00:00Z", "2024-05-01", "yesterday"]),
})


@given(readings)
def test_any_input_is_stored_whole_or_refused(data: dict[str, Any]) -> None:
    try:
        reading = parse_reading(data)
    except Unprocessable as exc:
        assert exc.issues
        return
    observation = to_observation(reading, "Patient/1", "Device/1")
    kind = KINDS[reading.kind]
    assert observation["code"]["coding"][0]["code"] == kind.loinc
    quantities = ([c["valueQuantity"] for c in observation["component"]]
                  if "component" in observation else [observation["valueQuantity"]])
    for quantity in quantities:
        assert quantity["code"] == kind.unit
        assert kind.low <= quantity["value"] <= kind.high


def test_all_problems_are_listed() -> None:
    with pytest.raises(Unprocessable) as caught:
        parse_reading({"kind": "spo2", "value": 101, "time": "noon"})
    messages = " ".join(i.diagnostics for i in caught.value.issues)
    assert "device" in messages and "outside" in messages and "time" in messages


def test_glucose_mmol_is_converted_to_mg_dl() -> None:
    reading = parse_reading({"device": "G1", "kind": "glucose", "value": 5.5,
                             "unit": "mmol/L", "time": "2024-05-01T12:00:00+02:00"})
    assert reading.values == (99.088,)
