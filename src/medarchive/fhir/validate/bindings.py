"""Required terminology bindings (R4 §4.1.0.1 "required": codes SHALL come from the value set).

Only value sets that the core CodeSystems fully define can be checked here (administrative
gender, observation status, ...); for the others (MIME types, languages, UCUM, SNOMED subsets)
``Spec.valueset_codes`` returns None and the binding is skipped. The code-only and
(system, code) sets are computed once per value set.
"""

from __future__ import annotations

from typing import Any

from medarchive.fhir.spec import Spec


class Bindings:
    """Checks codes against required value sets, caching each expansion."""

    def __init__(self, spec: Spec) -> None:
        self._spec = spec
        self._pairs: dict[str, frozenset[tuple[str, str]] | None] = {}
        self._codes: dict[str, frozenset[str]] = {}

    def _expansion(self, url: str) -> frozenset[tuple[str, str]] | None:
        if url not in self._pairs:
            pairs = self._spec.valueset_codes(url)
            self._pairs[url] = pairs
            if pairs is not None:
                self._codes[url] = frozenset(code for _, code in pairs)
        return self._pairs[url]

    def check_code(self, url: str, code: str) -> str | None:
        """A ``code`` element: its value must be one of the value set's codes."""
        if self._expansion(url) is None or code in self._codes[url]:
            return None
        return f"code {code!r} is not in the required value set {url}"

    def check_coded(self, url: str, type_code: str, value: dict[str, Any]) -> str | None:
        """A Coding, or a CodeableConcept of which at least one Coding must be in the set."""
        pairs = self._expansion(url)
        if pairs is None:
            return None
        if type_code == "Coding":
            return None if self._coding_ok(url, pairs, value) else (
                f"coding {self._show(value)} is not in the required value set {url}")
        if type_code == "CodeableConcept":
            codings = value.get("coding")
            if isinstance(codings, list) and any(
                    isinstance(c, dict) and self._coding_ok(url, pairs, c) for c in codings):
                return None
            if not isinstance(codings, list) or not codings:
                return f"a coding from the required value set {url} is needed"
            shown = ", ".join(self._show(c) for c in codings if isinstance(c, dict))
            return f"none of the codings ({shown}) is in the required value set {url}"
        return None

    def _coding_ok(self, url: str, pairs: frozenset[tuple[str, str]],
                   coding: dict[str, Any]) -> bool:
        code = coding.get("code")
        if not isinstance(code, str):
            return False
        system = coding.get("system")
        if isinstance(system, str):
            return (system, code) in pairs
        return code in self._codes[url]

    @staticmethod
    def _show(coding: dict[str, Any]) -> str:
        return f"{coding.get('system', '')}|{coding.get('code', '')}"
