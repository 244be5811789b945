"""The walker: checks a resource's JSON against the R4 element tables and collects every issue.

It follows R4 §2.6 (JSON representation) and the StructureDefinitions: known elements only, no
nulls or empty values, cardinality and array-ness, primitive JSON types and formats, primitive
extensions (``_given``), choice types, required bindings, reference forms and targets, contained
resources (and the resources inside Bundle entries and Parameters, each its own scope), and the
shape of extensions. It never stops at the first problem: each finding becomes an Issue with a
FHIRPath-style location such as ``Patient.name[0].given[1]``.
"""

from __future__ import annotations

from typing import Any

from medarchive.errors import Issue
from medarchive.fhir.validate.bindings import Bindings
from medarchive.fhir.validate.primitives import verdict
from medarchive.fhir.validate.references import ParsedReference, parse_reference
from medarchive.fhir.validate.scope import Scope
from medarchive.fhir.validate.tables import PRIMITIVE, RESOURCE, Slot, Table, Tables

MISSING: Any = object()
LOCAL_REF_TYPES = frozenset(("uri", "url", "canonical"))


class Walker:
    """Validates one resource per :meth:`validate` call; reusable, not thread-shared."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables
        self.spec = tables.spec
        self.bindings = Bindings(tables.spec)
        self.issues: list[Issue] = []

    def validate(self, resource: Any) -> list[Issue]:
        """All issues of one resource (R4 §2.6 JSON, §2.24 datatypes, StructureDefinitions)."""
        self.issues = []
        if not isinstance(resource, dict):
            self._error("structure", "a resource must be a JSON object", "")
        else:
            try:
                self._resource(resource, None, None, None)
            except RecursionError:
                self._error("too-costly", "the resource is nested too deeply to validate", "")
        return self.issues

    # -- reporting ---------------------------------------------------------------------------

    def _error(self, code: str, text: str, where: str, severity: str = "error") -> None:
        self.issues.append(Issue(code, text, severity, (where,) if where else ()))

    # -- resources ---------------------------------------------------------------------------

    def _resource(self, obj: dict[str, Any], where: str | None, scope: Scope | None,
                  index: int | None) -> str | None:
        """Validate a resource object; returns its type when it has a known one."""
        resource_type = obj.get("resourceType")
        at = where or ""
        if not isinstance(resource_type, str):
            self._error("structure", "resourceType is missing or not a string", at)
            return None
        if not self.spec.is_resource_type(resource_type):
            self._error("structure", f"unknown resourceType {resource_type!r}", at)
            return None
        loc = where or resource_type
        own = scope is None
        if scope is None:
            scope = Scope()
        self._object(obj, self.tables.table(resource_type), loc, scope, index, True)
        if index is not None:
            self._contained_rules(obj, loc)
        if own:
            for code, text, place in scope.finish():
                self._error(code, text, place)
        return resource_type

    def _contained_rules(self, obj: dict[str, Any], loc: str) -> None:
        if "id" not in obj:
            self._error("required", "a contained resource must have an id (R4 §2.3.0.3)", loc)
        meta = obj.get("meta")
        if isinstance(meta, dict):
            for key in ("versionId", "lastUpdated"):
                if key in meta:
                    self._error("invariant", f"a contained resource must not have meta.{key} "
                                "(dom-4)", f"{loc}.meta.{key}")
            if "security" in meta:
                self._error("invariant", "a contained resource must not have a security label "
                            "(dom-5)", f"{loc}.meta.security")
        if "contained" in obj:
            self._error("invariant", "a contained resource must not contain resources (dom-2)",
                        f"{loc}.contained")

    # -- objects -----------------------------------------------------------------------------

    def _object(self, obj: dict[str, Any], table: Table, loc: str, scope: Scope,
                owner: int | None, is_resource: bool = False) -> None:
        slots = table.slots
        choices: dict[str, str] = {}
        for key, value in obj.items():
            if key[:1] == "_":
                slot = slots.get(key[1:])
                if slot is None or slot.kind != PRIMITIVE:
                    self._unknown(key, table, loc)
                    continue
                if key[1:] not in obj:
                    self._primitive(slot, MISSING, value, loc, scope, owner)
            else:
                slot = slots.get(key)
                if slot is None:
                    if not (key == "resourceType" and is_resource):
                        self._unknown(key, table, loc)
                    continue
                if slot.kind == PRIMITIVE:
                    self._primitive(slot, value, obj.get(slot.ext_name, MISSING), loc, scope,
                                    owner)
                else:
                    self._complex(slot, value, loc, scope, owner)
            if slot.choice:
                other = choices.setdefault(slot.element, slot.json_name)
                if other != slot.json_name:
                    self._error("structure", f"only one of {other} and {slot.json_name} may be "
                                f"present ({slot.element}[x])", f"{loc}.{slot.json_name}")
        for label, minimum, names in table.required:
            count = 0
            for name, ext_name in names:
                found = obj.get(name)
                if found is None:
                    found = obj.get(ext_name)
                if found is not None:
                    count += len(found) if isinstance(found, list) else 1
            if count < minimum:
                self._error("required", f"{label}: minimum cardinality is {minimum}, found "
                            f"{count}", f"{loc}.{label}")

    def _unknown(self, key: str, table: Table, loc: str) -> None:
        name = key.lstrip("_")
        for slot in table.slots.values():
            size = len(slot.element)
            if slot.choice and name.startswith(slot.element) and name[size:size + 1].isupper():
                allowed = sorted({s.type_code for s in table.slots.values()
                                  if s.element == slot.element})
                self._error("structure", f"{key}: type not allowed for {slot.element}[x] "
                            f"(allowed: {', '.join(allowed)})", f"{loc}.{key}")
                return
        if key[:1] == "_" and name in table.slots:
            self._error("structure", f"{key}: only primitive elements can have a {key} "
                        "companion", f"{loc}.{key}")
            return
        self._error("structure", f"unknown element {key!r} in {table.path}", f"{loc}.{key}")

    # -- primitives --------------------------------------------------------------------------

    def _primitive(self, slot: Slot, value: Any, extra: Any, loc: str, scope: Scope,
                   owner: int | None) -> None:
        if not slot.is_list and slot.max != 0 and extra is MISSING and value is not None \
                and not isinstance(value, list):  # the common case: one plain value
            self._primitive_value(slot, value, None, scope, owner, loc)
            return
        here = f"{loc}.{slot.json_name}"
        if slot.max == 0:
            self._error("structure", f"{slot.json_name} is not allowed here (max 0)", here)
            return
        if not slot.is_list:
            if isinstance(value, list) or isinstance(extra, list):
                self._error("structure", f"{slot.json_name} must not be an array", here)
                return
            if value is None or extra is None:
                self._error("structure", "null is not allowed", here if value is None
                            else f"{loc}._{slot.json_name}")
            if value is not MISSING and value is not None:
                self._primitive_value(slot, value, here, scope, owner)
            if extra is not MISSING and extra is not None:
                self._primitive_extension(slot, extra, here, scope, owner, value)
            return
        values = self._array(slot, value, here, "")
        extras = self._array(slot, extra, here, "_")
        if values is None or extras is None:
            return
        if values and extras and len(values) != len(extras):
            self._error("structure", f"{slot.json_name} and _{slot.json_name} must have the "
                        "same length", here)
        count = max(len(values), len(extras))
        if slot.max is not None and count > slot.max:
            self._error("structure", f"{slot.json_name}: at most {slot.max} allowed", here)
        for i in range(count):
            item = values[i] if i < len(values) else None
            ext = extras[i] if i < len(extras) else None
            at = f"{here}[{i}]"
            if item is None and ext is None:
                self._error("structure", "null is not allowed unless the other of "
                            f"{slot.json_name}/_{slot.json_name} has a value here", at)
            if item is not None:
                self._primitive_value(slot, item, at, scope, owner)
            if ext is not None:
                self._primitive_extension(slot, ext, at, scope, owner, item)

    def _array(self, slot: Slot, value: Any, here: str, prefix: str) -> list[Any] | None:
        if value is MISSING:
            return []
        if not isinstance(value, list):
            self._error("structure", f"{prefix}{slot.json_name} must be an array", here)
            return None
        if not value:
            self._error("structure", f"{prefix}{slot.json_name}: empty arrays are not allowed",
                        here)
        return value

    def _primitive_value(self, slot: Slot, value: Any, at: str | None, scope: Scope,
                         owner: int | None, loc: str = "") -> None:
        """Check one value; its location is ``at``, or when None ``loc`` + the slot's name
        (made only when needed: most values are fine)."""
        assert slot.check is not None
        problem, warning = verdict(slot.check, slot.string_rules, value)
        if problem:
            self._error("value", problem, at or f"{loc}.{slot.json_name}")
            return
        if warning:
            self._error("value", warning, at or f"{loc}.{slot.json_name}", "warning")
        if slot.valueset is not None:
            problem = self.bindings.check_code(slot.valueset, value)
            if problem:
                self._error("code-invalid", problem, at or f"{loc}.{slot.json_name}")
        if slot.type_code in LOCAL_REF_TYPES and value[0] == "#":
            scope.local_reference(value[1:], at or f"{loc}.{slot.json_name}", owner, None,
                                  checked=slot.type_code == "canonical")

    def _primitive_extension(self, slot: Slot, ext: Any, at: str, scope: Scope,
                             owner: int | None, value: Any) -> None:
        if not isinstance(ext, dict):
            self._error("structure", f"_{slot.json_name} must be a JSON object", at)
            return
        if not ext:
            self._error("structure", "empty objects are not allowed", at)
            return
        if (value is MISSING or value is None) and "extension" not in ext:
            self._error("invariant", "an element must have a value or children (ele-1)", at)
        self._object(ext, self.tables.table(slot.type_code), at, scope, owner)

    # -- complex values ----------------------------------------------------------------------

    def _complex(self, slot: Slot, value: Any, loc: str, scope: Scope,
                 owner: int | None) -> None:
        here = f"{loc}.{slot.json_name}"
        if slot.max == 0:
            self._error("structure", f"{slot.json_name} is not allowed here (max 0)", here)
            return
        if slot.is_list:
            if not isinstance(value, list):
                self._error("structure", f"{slot.json_name} must be an array", here)
                self._complex_item(slot, value, here, scope, owner, None)
                return
            if not value:
                self._error("structure", f"{slot.json_name}: empty arrays are not allowed", here)
            if slot.max is not None and len(value) > slot.max:
                self._error("structure", f"{slot.json_name}: at most {slot.max} allowed", here)
            for i, item in enumerate(value):
                self._complex_item(slot, item, f"{here}[{i}]", scope, owner, i)
        elif isinstance(value, list):
            self._error("structure", f"{slot.json_name} must not be an array", here)
        else:
            self._complex_item(slot, value, here, scope, owner, None)

    def _complex_item(self, slot: Slot, item: Any, at: str, scope: Scope, owner: int | None,
                      index: int | None) -> None:
        if item is None:
            self._error("structure", "null is not allowed", at)
            return
        if not isinstance(item, dict):
            self._error("structure", f"{slot.json_name} must be a JSON object", at)
            return
        if not item:
            self._error("structure", "empty objects are not allowed", at)
            return
        if slot.kind == RESOURCE:
            if slot.contained:
                found = self._resource(item, at, scope, index if index is not None else 0)
                scope.contained_resource(item.get("id"), found, index or 0, at)
            else:
                self._resource(item, at, None, None)
            return
        if len(item) == 1 and "id" in item:
            self._error("invariant", "an element must have a value or children (ele-1)", at)
        assert slot.child is not None
        self._object(item, self.tables.table(slot.child), at, scope, owner)
        code = slot.type_code
        if code == "Extension":
            self._extension(item, at)
        elif code == "Reference":
            self._reference(slot, item, at, scope, owner)
        if slot.valueset is not None:
            problem = self.bindings.check_coded(slot.valueset, code, item)
            if problem:
                self._error("code-invalid", problem, at)

    def _extension(self, item: dict[str, Any], at: str) -> None:
        has_value = any(k.startswith(("value", "_value")) for k in item)
        if has_value and "extension" in item:
            self._error("invariant", "an extension must have either extensions or value[x], "
                        "not both (ext-1)", at)
        elif not has_value and "extension" not in item:
            self._error("invariant", "an extension must have a value[x] or nested extensions "
                        "(ext-1)", at)

    def _reference(self, slot: Slot, item: dict[str, Any], at: str, scope: Scope,
                   owner: int | None) -> None:
        text = item.get("reference")
        if not isinstance(text, str) or not text:
            return
        parsed = parse_reference(text)
        where = f"{at}.reference"
        if isinstance(parsed, str):
            self._error("value", parsed, where)
            return
        if parsed.kind in ("local", "container"):
            scope.local_reference(parsed.local_id or "", where, owner, slot.targets, checked=True)
            return
        self._reference_type(slot, parsed, where, text)
        declared = item.get("type")
        if isinstance(declared, str) and slot.targets is not None and self.spec.is_resource_type(
                declared) and declared not in slot.targets:
            self._error("value", f"Reference.type {declared} is not an allowed target "
                        f"({', '.join(sorted(slot.targets))})", f"{at}.type")

    def _reference_type(self, slot: Slot, parsed: ParsedReference, where: str,
                        text: str) -> None:
        target = parsed.resource_type
        if target is None:
            return
        if not self.spec.is_resource_type(target):
            if parsed.kind == "relative":
                self._error("value", f"reference {text!r} names unknown resource type "
                            f"{target!r}", where)
            return
        if slot.targets is not None and target not in slot.targets:
            self._error("value", f"reference to {target} is not allowed here (allowed: "
                        f"{', '.join(sorted(slot.targets))})", where)
