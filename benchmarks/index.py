"""Search-index extraction speed: the fast plain-path evaluator against the FHIRPath engine.

Indexes the same generated record with both indexers, alternating rounds in one run, and
prints resources per second for each and their ratio (docs/performance.md).

    python benchmarks/index.py --patients 20 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from medarchive.demo.generate import generate_ndjson
from medarchive.fhir.search.index import build_indexer
from medarchive.fhir.spec import load_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    spec = load_spec()
    resources = list(generate_ndjson(args.patients, seed=1))
    indexers = {"fast": build_indexer(spec), "engine": build_indexer(spec, fast_paths=False)}
    rates: dict[str, list[float]] = {name: [] for name in indexers}
    for indexer in indexers.values():
        for resource in resources[:200]:
            indexer(resource)  # compile the plans before timing
    for _ in range(args.rounds):
        for name, indexer in indexers.items():
            started = time.perf_counter()
            for resource in resources:
                indexer(resource)
            rates[name].append(len(resources) / (time.perf_counter() - started))
    fast, engine = statistics.median(rates["fast"]), statistics.median(rates["engine"])
    print(json.dumps({"resources": len(resources), "fast_per_s": round(fast),
                      "engine_per_s": round(engine), "ratio": round(fast / engine, 2)}))


if __name__ == "__main__":
    main()
