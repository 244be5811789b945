"""Instructions per read by id, encryption off and on, counted by valgrind's callgrind.

The throughput figures of ``benchmarks/encryption.py`` move by several percent with whatever
else the machine runs; an instruction count does not. This loads the same generated record as
that benchmark into two SQLite databases (encryption off and on), then reads every resource
once per phase, at the store and through the service path of a REST read (``Router.handle``
of a ``GET``), in a process run under ``valgrind --tool=callgrind`` that dumps its counters
between phases. Prints instructions per read and the cost of encryption. Needs valgrind.

    python benchmarks/encryption_reads.py --patients 10
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from medarchive.app import build_services
from medarchive.demo import generate, reference_bundle
from medarchive.service.request import FhirRequest
from medarchive.settings import Settings

MODES = ("off", "on")


def _services(folder: Path, mode: str) -> Any:
    return build_services(Settings(database_url=f"sqlite:///{folder / mode}.db", auth="off",
                                   encryption=mode,
                                   encryption_key_file=str(folder / "bench.kek")))


def load(folder: Path, patients: int) -> None:
    """Both databases, and the ids of what each holds (``keys.json``)."""
    keys = {}
    for mode in MODES:
        services = _services(folder, mode)
        services.submit(reference_bundle())
        keys[mode] = [entry["response"]["location"].split("/_history")[0].split("/")[-2:]
                      for bundle in generate(patients, seed=5)
                      for entry in services.submit(bundle)["entry"]]
        services.close()
    (folder / "keys.json").write_text(json.dumps(keys))


def measure(folder: Path) -> None:
    """Runs under callgrind: every read once per phase, counters dumped after each."""
    keys = json.loads((folder / "keys.json").read_text())
    services = {mode: _services(folder, mode) for mode in MODES}

    def phase(label: str) -> None:
        subprocess.run(["callgrind_control", "-d", label, str(os.getpid())], check=True,
                       capture_output=True)

    def reads(mode: str, service: bool) -> None:
        for rtype, rid in keys[mode]:
            if service:
                reply = services[mode].router.handle(FhirRequest("GET", f"{rtype}/{rid}"),
                                                     None)
                assert reply.status == 200
            else:
                assert services[mode].store.read(rtype, rid) is not None

    for mode in MODES:  # keys unwrapped, statements prepared
        reads(mode, False)
        reads(mode, True)
    phase("warm")
    for _ in range(2):
        for mode in MODES:
            reads(mode, False)
            phase(f"read_{mode}")
            reads(mode, True)
            phase(f"service_{mode}")


def _counts(folder: Path) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for dump in sorted(folder.glob("callgrind.out.*.*")):
        label = total = None
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith("desc: Trigger: dump "):
                label = line.removeprefix("desc: Trigger: dump ")
            elif line.startswith("totals: "):
                total = int(line.split()[1])
        if label and total is not None and label != "warm":
            found.setdefault(label, []).append(total)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        measure(args.measure)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        load(folder, args.patients)
        subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file="
                        f"{folder}/callgrind.out.%p", sys.executable, __file__, "--measure",
                        str(folder)], check=True, capture_output=True)
        reads = len(json.loads((folder / "keys.json").read_text())["on"])
        per_read = {label: min(totals) / reads for label, totals in _counts(folder).items()}
    figures: dict[str, Any] = {"backend": "sqlite", "reads_per_phase": reads}
    for kind in ("read", "service"):
        off, on = per_read[f"{kind}_off"], per_read[f"{kind}_on"]
        figures |= {f"{kind}_off_instructions": round(off), f"{kind}_on_instructions": round(on),
                    f"{kind}_extra_instructions": round(on - off),
                    f"{kind}_cost_pct": round(100 * (1 - off / on), 1)}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
