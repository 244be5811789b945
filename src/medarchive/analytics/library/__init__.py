"""The hospital views MedArchive ships, and the SQL that derives metrics from their tables.

Each ``<name>.json`` is a SQL on FHIR v2 ViewDefinition (patient demographics, encounters,
diagnoses, vital signs, lab results, medications, ward stays, inpatient admissions); each
``<name>.sql`` is a DuckDB query over the tables those views materialise into (length of
stay, daily census, 30-day readmissions), documented in its header comment. Shipping them
as package data lets ``warehouse build`` install them as stored ViewDefinitions.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

# Which view table each shipped query reads.
QUERY_VIEWS = {"length_of_stay": "encounters", "daily_census": "ward_stays",
               "readmissions_30d": "inpatient_admissions"}


def _files(suffix: str) -> dict[str, str]:
    root = resources.files(__name__)
    return {entry.name[: -len(suffix)]: entry.read_text(encoding="utf-8")
            for entry in sorted(root.iterdir(), key=lambda e: e.name)
            if entry.name.endswith(suffix)}


def views() -> dict[str, dict[str, Any]]:
    """Every shipped ViewDefinition by name (fresh copies; callers may modify them)."""
    return {name: json.loads(text) for name, text in _files(".json").items()}


def view(name: str) -> dict[str, Any]:
    """One shipped ViewDefinition; KeyError names the ones that exist."""
    found = views()
    if name not in found:
        raise KeyError(f"no shipped view {name!r}; have {', '.join(found)}")
    return found[name]


def queries() -> dict[str, str]:
    """Every shipped metric query (DuckDB SQL) by name."""
    return _files(".sql")
