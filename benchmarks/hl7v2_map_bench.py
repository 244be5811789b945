"""HL7 v2 parse + map throughput on the public ADT and ORU samples.

Workloads: every ADT sample of ../shared/conformance/hl7v2/fhir-converter whose event MedArchive
maps (A01-A05, A08, A11, A13, A28, A31, A40) and every ORU^R01 sample. For each: messages per
second for parse alone, map alone (already parsed) and parse + map, single-threaded, best of
several rounds. ``python_hl7_split`` and ``plain_split`` time only the splitting into
fields/components on the same normalised text: the measurement that replaced python-hl7 inside
``parse_message`` by a plain split (docs/ingestion.md, "Splitting without python-hl7").
Prints one JSON object.

    python benchmarks/hl7v2_map_bench.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hl7

from medarchive.hl7v2 import Hl7Error, MappingConfig, map_message, parse_message, split_messages

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT.parent / "shared" / "conformance" / "hl7v2" / "fhir-converter"


def load(pattern: str) -> list[bytes]:
    """The samples matching ``pattern`` that map without error."""
    out = []
    for path in sorted(SAMPLES.glob(pattern)):
        for part in split_messages(path.read_bytes()):
            assert isinstance(part, bytes)
            try:
                map_message(parse_message(part), MappingConfig())
            except Hl7Error:
                continue
            out.append(part)
    return out


def rate(items: list[Any], work: Callable[[Any], object], rounds: int) -> float:
    """Best-of-``rounds`` items per second, each round running every item 20 times over."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(20):
            for item in items:
                work(item)
        best = min(best, time.perf_counter() - start)
    return round(20 * len(items) / best, 1)


def plain_split(text: str) -> object:
    return [[[[c.split("&") for c in r.split("^")] for r in f.split("~")] for f in line.split("|")]
            for line in text.split("\r")]


def workload(name: str, messages: list[bytes], rounds: int) -> dict[str, Any]:
    config = MappingConfig()
    parsed = [parse_message(m) for m in messages]
    texts = [p.raw.rstrip("\r") for p in parsed]
    results = [map_message(p, config) for p in parsed]
    return {
        "workload": name,
        "messages": len(messages),
        "segments_per_message": round(sum(len(p.segment_list) for p in parsed) / len(parsed), 1),
        "resources_per_message": round(
            sum(len(r.bundle["entry"]) for r in results) / len(results), 1),
        "unmapped_per_message": round(sum(len(r.unmapped) for r in results) / len(results), 1),
        "parse_msgs_per_s": rate(messages, parse_message, rounds),
        "map_msgs_per_s": rate(parsed, lambda m: map_message(m, config), rounds),
        "parse_and_map_msgs_per_s": rate(
            messages, lambda m: map_message(parse_message(m), config), rounds),
        "python_hl7_split_msgs_per_s": rate(texts, hl7.parse, rounds),
        "plain_split_msgs_per_s": rate(texts, plain_split, rounds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    report = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "python_hl7": getattr(hl7, "__version__", "unknown"),
        "results": [workload("ADT", load("ADT*.hl7"), args.rounds),
                    workload("ORU^R01", load("*ORU*.hl7") + load("LRI_*.hl7"), args.rounds)],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
