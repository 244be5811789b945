"""Search-index extraction cost: CPU time per resource of the indexer, beside references.

Indexes generated demo records and Synthea resources (``../shared/conformance/synthea``) with
the indexer (plans compiled per resource type, ``fhir.search.paths``) and with the same indexer
evaluating every expression with the FHIRPath engine; ``--baseline`` adds another source tree
(an earlier version of ``src/``) indexing the same resources. Each measurement runs in its own
process and the rounds alternate, so all figures come from the same run; the medians over the
rounds of CPU microseconds per resource (best of three passes in each process) and their ratios
are printed as JSON (docs/performance.md).

    python benchmarks/index.py --patients 20 --rounds 3
    git archive <commit> src | tar -x -C /tmp/base
    python benchmarks/index.py --patients 20 --rounds 3 --baseline /tmp/base/src
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SYNTHEA = ROOT.parent / "shared" / "conformance" / "synthea" / "bundles"


def workloads(patients: int, bundles: int) -> dict[str, list[dict[str, Any]]]:
    import orjson

    from medarchive.demo.generate import generate_ndjson
    synthea = [entry["resource"] for path in sorted(SYNTHEA.glob("*.json"))[:bundles]
               for entry in orjson.loads(path.read_bytes()).get("entry", [])]
    return {"demo": list(generate_ndjson(patients, seed=1)), "synthea": synthea}


def measure(indexer_name: str, patients: int, bundles: int) -> dict[str, float]:
    """CPU microseconds per resource of one indexer, per workload: the best of three passes
    after a warm-up pass (other processes on the machine only ever add time)."""
    from medarchive.fhir.search.index import build_indexer
    from medarchive.fhir.spec import load_spec
    indexer = build_indexer(load_spec(), fast_paths=indexer_name != "engine")
    out = {}
    for name, resources in workloads(patients, bundles).items():
        for resource in resources:
            indexer(resource)
        passes = []
        for _ in range(3):
            started = time.process_time()
            for resource in resources:
                indexer(resource)
            passes.append((time.process_time() - started) / len(resources) * 1e6)
        out[name] = min(passes)
    return out


def child(indexer_name: str, source: str | None, args: argparse.Namespace) -> dict[str, float]:
    env = dict(os.environ)
    if source:
        env["PYTHONPATH"] = source
    command = [sys.executable, __file__, "--measure", indexer_name,
               "--patients", str(args.patients), "--bundles", str(args.bundles)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--bundles", type=int, default=10, help="Synthea bundles to index")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", help="another src/ tree to measure beside this one")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.patients, args.bundles)))
        return
    runs: dict[str, tuple[str, str | None]] = {"compiled": ("fast", None),
                                               "engine": ("engine", None)}
    if args.baseline:
        runs["baseline"] = ("fast", args.baseline)
    found: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, (indexer_name, source) in runs.items():
            found[name].append(child(indexer_name, source, args))
    result: dict[str, Any] = {"load_average": [round(x, 2) for x in os.getloadavg()]}
    for workload in ("demo", "synthea"):
        median = {name: statistics.median(run[workload] for run in found[name])
                  for name in runs}
        row: dict[str, Any] = {f"{name}_us": round(value, 1) for name, value in median.items()}
        for name in runs:
            if name != "compiled":
                row[f"{name}_over_compiled"] = round(median[name] / median["compiled"], 2)
        result[workload] = row
    print(json.dumps(result))


if __name__ == "__main__":
    main()
