"""Local references and contained resources within one resource (R4 §2.3.0.3, dom-3).

A ``#id`` reference may only point at a resource contained in the same container, and every
contained resource must be referenced from elsewhere in the container (or refer to the container
with ``#``). Both sides are only known once the whole resource has been walked, so the walker
records them here and asks for the findings at the end. A Bundle entry or a Parameters resource
opens a scope of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Scope:
    """Contained ids and local references seen while walking one resource."""

    contained: dict[str, tuple[int, str | None, str]] = field(default_factory=dict)
    references: list[tuple[str, str, int | None, frozenset[str] | None, bool]] = field(
        default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)

    def contained_resource(self, resource_id: object, resource_type: str | None, index: int,
                           where: str) -> None:
        """Record ``contained[index]`` (its id may be missing or invalid: reported elsewhere)."""
        if not isinstance(resource_id, str):
            return
        if resource_id in self.contained:
            self.duplicates.append((resource_id, where))
            return
        self.contained[resource_id] = (index, resource_type, where)

    def local_reference(self, local_id: str, where: str, owner: int | None,
                        targets: frozenset[str] | None, *, checked: bool) -> None:
        """Record ``#local_id`` seen at ``where`` inside ``contained[owner]`` (None: container).

        ``checked`` references must resolve; others (uri/url values) only count as uses.
        """
        self.references.append((local_id, where, owner, targets, checked))

    def finish(self) -> list[tuple[str, str, str]]:
        """(issue code, text, location) for every unresolved, mistyped or unused reference."""
        found: list[tuple[str, str, str]] = [
            ("invariant", f"duplicate contained resource id {rid!r}", where)
            for rid, where in self.duplicates]
        used: set[int] = set()
        for local_id, where, owner, targets, checked in self.references:
            if not local_id:
                if owner is not None:
                    used.add(owner)
                continue
            target = self.contained.get(local_id)
            if target is None:
                if checked:
                    found.append(("not-found", f"local reference #{local_id} does not match a "
                                  "contained resource id", where))
                continue
            index, resource_type, _ = target
            if owner != index:
                used.add(index)
            if targets is not None and resource_type is not None and (
                    resource_type not in targets):
                found.append(("value", f"reference to {resource_type} is not allowed here "
                              f"(allowed: {', '.join(sorted(targets))})", where))
        for local_id, (index, _, where) in self.contained.items():
            if index not in used:
                found.append(("invariant", f"contained resource {local_id!r} is not referenced "
                              "from the rest of the resource (dom-3)", where))
        return found
