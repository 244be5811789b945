"""ViewDefinitions kept in the record itself, as R4 ``Library`` resources.

SQL on FHIR v2's ViewDefinition is a logical model, not an R4 resource type: the R4 definitions
MedArchive validates against do not know it, so a ``ViewDefinition`` JSON cannot be stored as
itself. It is stored the way R4 keeps other computable artefacts (R4 §Library: "logic
libraries"): a ``Library`` with ``type`` ``logic-library``, ``name`` the view's name, and the
ViewDefinition JSON as its one ``content`` attachment (base64, content type ``VIEW_TYPE``).
The Library's id is the view's name, so storing a view again updates it (a new version) and
``medarchive views run NAME`` finds it. Views go in and out through the repository, so they
are versioned, authorized and audited like any resource.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any

import orjson

from medarchive.analytics.viewdef import ViewError, parse_view
from medarchive.fhir.search.query import SearchQuery

VIEW_TYPE = "application/json+viewdefinition"
LIBRARY_TYPES = "http://terminology.hl7.org/CodeSystem/library-type"
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
PAGE = 200


def view_name(view: dict[str, Any]) -> str:
    """The view's ``name`` (SQL on FHIR: a database-friendly name); ViewError without one."""
    name = view.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise ViewError("a stored view needs a name of letters, digits and _ (at most 64)")
    return name


def wrap(view: dict[str, Any]) -> dict[str, Any]:
    """The Library resource that stores ``view`` (checked with ``parse_view`` first)."""
    parse_view(view)
    name = view_name(view)
    return {"resourceType": "Library", "id": name.replace("_", "-"), "name": name,
            "title": view.get("title") or name, "status": "active",
            "type": {"coding": [{"system": LIBRARY_TYPES, "code": "logic-library"}]},
            "description": f"SQL on FHIR ViewDefinition over {view.get('resource')}",
            "content": [{"contentType": VIEW_TYPE,
                         "data": base64.b64encode(orjson.dumps(view)).decode()}]}


def unwrap(library: dict[str, Any]) -> dict[str, Any] | None:
    """The ViewDefinition a Library holds, or None when it holds none."""
    for content in library.get("content") or ():
        if isinstance(content, dict) and content.get("contentType") == VIEW_TYPE \
                and isinstance(content.get("data"), str):
            view: dict[str, Any] = orjson.loads(base64.b64decode(content["data"]))
            return view
    return None


def store_view(repository: Any, view: dict[str, Any]) -> int:
    """Store (create or update) ``view``; returns the Library's new version number."""
    library = wrap(view)
    written = repository.update(library, "Library", library["id"])
    return int(written.version.version_id)


def stored_views(repository: Any) -> Iterator[dict[str, Any]]:
    """Every ViewDefinition stored in the record (Libraries the requester may see)."""
    offset = 0
    while True:
        page = repository.search(SearchQuery("Library", count=PAGE, offset=offset))
        for version in page:
            view = unwrap(version.resource())
            if view is not None:
                yield view
        if len(page) < PAGE:
            return
        offset += PAGE


def find_view(repository: Any, name: str) -> dict[str, Any] | None:
    """The stored view called ``name``, or None."""
    for view in stored_views(repository):
        if view.get("name") == name:
            return view
    return None
