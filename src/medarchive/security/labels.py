"""Security labels (R4 §8.8 "Security Labels", ``meta.security``) that hide a resource from
everyone not entitled to them.

Two kinds of label protect a resource: the confidentiality codes ``R`` (restricted) and ``V``
(very restricted) of v3-Confidentiality, and the sensitivity codes of v3-ActCode
(InformationSensitivityPolicy: ``PSY`` psychiatry, ``PSYTHPN`` psychotherapy note, ``HIV``,
``ETH`` substance abuse, ``SDV`` sexual and domestic violence, ...). An entitlement names the
code (``R``, ``HIV``...); ``V`` includes ``R`` (the confidentiality scale is ordered N < R <
V). The codes are data: edit ``PROTECTED`` to change them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from medarchive.fhir.search.query import CodeSetValue, Predicate

CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
SENSITIVITY = frozenset({"BH", "ETH", "GDIS", "HIV", "MST", "PSY", "PSYTHPN", "SCA", "SDV",
                         "SEX", "STD", "SUD", "TBOO"})
PROTECTED: Mapping[str, frozenset[str]] = {
    CONFIDENTIALITY: frozenset({"R", "V"}),
    ACT_CODE: SENSITIVITY,
}
LABELS = frozenset({"R", "V"} | SENSITIVITY)
IMPLIES = {"V": frozenset({"R"})}
HIDDEN = "urn:medarchive:hidden-labels"  # names the value set of ``hidden_predicate``


def protected_labels(resource: Mapping[str, Any] | None) -> set[str]:
    """The protecting codes in ``resource.meta.security`` (empty when unlabelled)."""
    meta = (resource or {}).get("meta")
    found: set[str] = set()
    if not isinstance(meta, dict):
        return found
    for coding in meta.get("security") or ():
        if isinstance(coding, dict) and coding.get("code") in PROTECTED.get(
                str(coding.get("system")), ()):
            found.add(str(coding["code"]))
    return found


def effective(entitled: Iterable[str]) -> frozenset[str]:
    """The labels an entitlement set covers (``V`` brings ``R``)."""
    labels = set(entitled)
    for label in list(labels):
        labels |= IMPLIES.get(label, frozenset())
    return frozenset(labels)


@lru_cache(maxsize=256)  # a few entitlement sets, asked on every search (Predicate is frozen)
def hidden_predicate(entitled: frozenset[str]) -> Predicate | None:
    """``_security:not-in=...`` for every protecting code not in ``entitled``: the search
    clause that keeps labelled resources out of a query (None when nothing is hidden). One
    value set, so the SQL is one ``code IN (...)`` per system instead of an OR of fifteen
    (system, code) pairs (about 25 us less to compile per search)."""
    codes = tuple((system, code) for system, protected in sorted(PROTECTED.items())
                  for code in sorted(protected) if code not in entitled)
    if not codes:
        return None
    return Predicate("_security", "token", (CodeSetValue(HIDDEN, codes),), modifier="not-in")


def check_label(text: str) -> str:
    """A known label code, or ValueError naming the known ones."""
    if text not in LABELS:
        raise ValueError(f"unknown security label {text!r}; known: {', '.join(sorted(LABELS))}")
    return text
