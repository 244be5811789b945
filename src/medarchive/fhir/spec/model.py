"""Value types the spec loader hands out: one element of a type, one search parameter.

They are plain frozen values so that search, validation and the REST layer can share one
loaded Spec without copying or defending against mutation.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ElementInfo:
    """One child element of a resource, datatype or backbone path (R4 §2.27 ElementDefinition).

    ``name`` is the JSON property name without ``[x]``; a choice element (``value[x]``) lists all
    its allowed type codes in ``types`` and has ``choice`` set. ``child_path`` names the path whose
    elements describe this one's children for inline BackboneElement/Element types and for
    ``contentReference`` (``Questionnaire.item.item`` -> ``Questionnaire.item``).
    """

    name: str
    types: tuple[str, ...]
    min: int
    max: str
    choice: bool
    child_path: str | None
    binding_strength: str | None
    binding_valueset: str | None
    target_profiles: tuple[str, ...] = ()

    @property
    def is_list(self) -> bool:
        """True when the element repeats, i.e. is a JSON array (R4 §2.6.2: max > 1)."""
        return self.max not in ("0", "1")


@dataclass(frozen=True, slots=True)
class SearchParamDef:
    """One SearchParameter as it applies to a single resource type (R4 §3.1.1, §2.40)."""

    code: str
    type: str
    expression: str | None
    url: str
    targets: tuple[str, ...]
    components: tuple[tuple[str, str], ...]
    multiple_or: bool | None = None
    modifiers: tuple[str, ...] = ()
    comparators: tuple[str, ...] = ()
