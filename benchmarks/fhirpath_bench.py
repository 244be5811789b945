"""FHIRPath throughput and conformance, printed as JSON.

Measures evaluations per second of typical search-parameter expressions over the official R4
Patient and Observation examples (``<repo>/../shared/conformance/fhir-examples``), the cost of
indexing one resource with every R4 SearchParameter expression of its type, and how many of
the official FHIRPath R4 suite's tests pass with a value-only comparison (no type checks, no
strict mode: the five ``mode="strict"`` tests count as failures here; the real conformance
test is tests/conformance/test_fhirpath_suite.py). When the PyPI
library ``fhirpathpy`` is installed it is measured the same way, for comparison.

    .venv/bin/python benchmarks/fhirpath_bench.py [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "conformance"
EXPRESSIONS = [
    ("Patient", "Patient.name"),
    ("Observation", "Observation.subject.where(resolve() is Patient)"),
    ("Observation", "Observation.value.as(Quantity)"),
    ("Observation", "(Observation.effective as dateTime)"),
    ("Patient", "Patient.name.given"),
    ("Patient", "Patient.telecom.where(system='phone')"),
]

Engine = Callable[[str], Callable[[Any], Any]]


def medarchive_engine() -> Engine:
    from medarchive.fhirpath import compile
    return lambda text: compile(text).evaluate


def fhirpathpy_engine() -> Engine | None:
    try:
        import fhirpathpy
        from fhirpathpy.models import models
    except ImportError:
        return None

    def build(text: str) -> Callable[[Any], Any]:
        fn = fhirpathpy.compile(text, models["r4"])
        return lambda resource: fn(resource)
    return build


def _load(prefix: str) -> list[dict[str, Any]]:
    folder = SHARED / "fhir-examples" / "r4"
    return [json.loads(p.read_text()) for p in sorted(folder.glob(f"{prefix}-*.json"))]


def _rate(fn: Callable[[Any], Any], resources: list[Any], seconds: float) -> float:
    for r in resources:  # warm up, and fail fast on unsupported expressions
        fn(r)
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for r in resources:
            fn(r)
        count += len(resources)
    return count / (time.perf_counter() - start)


def _search_expressions() -> dict[str, list[str]]:
    bundle = json.loads((SHARED / "fhir-rest" / "spec-r4" / "Bundle-searchParams.json")
                        .read_text())
    out: dict[str, list[str]] = {}
    for entry in bundle["entry"]:
        sp = entry["resource"]
        if sp.get("expression"):
            for base in sp["base"]:
                out.setdefault(base, []).append(sp["expression"])
    return out


def _render(value: Any) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, float):
        value = Decimal(repr(value))
    if isinstance(value, Decimal):
        return format(value, "f")
    iso = getattr(value, "iso", None)
    if callable(iso):
        return ("T" if type(value).__name__ == "Time" else "") + str(iso())
    text = str(value)
    return text


def _suite_score(engine: Engine) -> dict[str, int]:
    xml = SHARED / "fhirpath" / "tests-fhir-r4.xml"
    inputs: dict[str, Any] = {}
    passed = failed = 0
    for test in ET.parse(xml).getroot().iter("test"):
        expr_el = test.find("expression")
        assert expr_el is not None
        name = test.get("inputfile")
        if name and name not in inputs:
            inputs[name] = json.loads(
                (SHARED / "fhirpath" / "input-json" / (name.rsplit(".", 1)[0] + ".json"))
                .read_text())
        resource = inputs.get(name) if name else {}
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # fhirpathpy prints trace()
                result = engine(expr_el.text or "")(resource)
            ok = expr_el.get("invalid") is None
            if ok:
                if test.get("predicate") == "true":
                    result = [bool(result)]
                got = [_render(v).lstrip("@") for v in result]
                want = [(o.text or "").lstrip("@") for o in test.findall("output")]
                ok = got == want if test.get("ordered") != "false" else sorted(got) == sorted(want)
        except Exception:  # any failure is "invalid" to this value-only scorer
            ok = expr_el.get("invalid") is not None
        passed += ok
        failed += not ok
    return {"passed": passed, "failed": failed}


def _measure(name: str, engine: Engine, seconds: float) -> dict[str, Any]:
    data = {"Patient": _load("Patient"), "Observation": _load("Observation")}
    rates: dict[str, Any] = {}
    for rtype, text in EXPRESSIONS:
        try:
            rates[text] = round(_rate(engine(text), data[rtype], seconds))
        except Exception as exc:  # an engine that lacks a function reports it here
            rates[text] = f"error: {type(exc).__name__}: {str(exc)[:80]}"
    indexing: dict[str, Any] = {}
    search = _search_expressions()
    for rtype in ("Patient", "Observation"):
        exprs = search.get(rtype, []) + search.get("Resource", []) \
            + search.get("DomainResource", [])
        try:
            fns = [engine(e) for e in exprs]

            def index(resource: Any, fns: list[Callable[[Any], Any]] = fns) -> None:
                for fn in fns:
                    fn(resource)
            indexing[rtype] = {"expressions": len(exprs),
                               "resources_per_s": round(_rate(index, data[rtype], seconds))}
        except Exception as exc:
            indexing[rtype] = f"error: {type(exc).__name__}: {str(exc)[:80]}"
    return {"engine": name, "evaluations_per_s": rates, "index_all_search_params": indexing,
            "suite_value_only": _suite_score(engine)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"conformance data not found at {SHARED}")
    results = [_measure("medarchive.fhirpath", medarchive_engine(), args.seconds)]
    other = fhirpathpy_engine()
    if other is not None:
        from importlib.metadata import version
        results.append(_measure(f"fhirpathpy {version('fhirpathpy')}", other, args.seconds))
    print(json.dumps({"python": platform.python_version(), "machine": platform.machine(),
                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
