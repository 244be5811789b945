"""What a view column holds, decided once for every engine.

SQL on FHIR v2 lets a column declare the FHIR type of its values
(``ViewDefinition.select.column.type``). The three engines must return the same Python values
for the same rows, so the declared type is reduced here to one of five *kinds* and every
engine converts to that kind the same way: the evaluator with :func:`coerce`, the SQL
compilers by casting to the SQL type the dialect chooses for the kind, after which the runner
applies :func:`coerce` to what the database returns.

Kinds and their Python values: ``boolean`` -> ``bool``, ``integer`` -> ``int``, ``decimal`` ->
``float`` (SQL engines compute in DOUBLE, so the reference does too), ``string`` -> ``str``
(all string-like primitives and dates/times, kept as their FHIR text), ``json`` -> the JSON
value (``dict``) of a complex datatype.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from medarchive.fhirpath import to_json

_STRING_TYPES = frozenset({
    "string", "code", "id", "markdown", "uri", "url", "canonical", "oid", "uuid",
    "base64Binary", "xhtml", "date", "dateTime", "instant", "time", "String", "Date",
    "DateTime", "Time",
})
_INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt", "integer64", "Integer",
                            "Long"})
_BOOLEAN_TYPES = frozenset({"boolean", "Boolean"})
_DECIMAL_TYPES = frozenset({"decimal", "Decimal"})
KINDS = ("boolean", "integer", "decimal", "string", "json")


def kind_of(fhir_type: str | None) -> str | None:
    """The kind of a FHIR or System type code; None when the type is not given."""
    if fhir_type is None:
        return None
    if fhir_type in _STRING_TYPES:
        return "string"
    if fhir_type in _INTEGER_TYPES:
        return "integer"
    if fhir_type in _BOOLEAN_TYPES:
        return "boolean"
    if fhir_type in _DECIMAL_TYPES:
        return "decimal"
    return "json"


def coerce(value: Any, kind: str | None) -> Any:
    """Convert one value to the Python form of ``kind`` (None: by the value's own type)."""
    if value is None:
        return None
    if kind is None:
        return _natural(value)
    if kind == "string":
        return _text(value)
    if kind == "integer":
        return _integer(value)
    if kind == "decimal":
        return _decimal(value)
    if kind == "boolean":
        return _boolean(value)
    return _json(value)


def _natural(value: Any) -> Any:
    if isinstance(value, (bool, int, str, dict, list)):
        return value
    if isinstance(value, (Decimal, float)):
        return float(value)
    return to_json(value)


def _text(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (Decimal, float)):
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    converted = to_json(value)
    return converted if isinstance(converted, str) else _text(converted)


def _integer(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, (Decimal, float)):
        return int(value) if float(value).is_integer() else float(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    return value


def _decimal(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _boolean(value: Any) -> Any:
    if isinstance(value, str) and value in ("true", "false"):
        return value == "true"
    return value


def _json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return _natural(value)
