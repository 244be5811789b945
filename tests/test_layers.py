"""House rule 1: imports only point down the layers of DESIGN.md (transports > service >
security > store > domain). This test reads every module's imports and fails on an upward one."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "medarchive"

# layer of each top-level subpackage; a module may import only from layers <= its own. The
# CLI is an entry point like app.py: both may build the system through the composition root.
LAYER = {"errors": 0, "settings": 0, "fhir": 1, "fhirpath": 1, "hl7v2": 1, "dicom": 1,
         "demo": 1, "store": 2, "crypto": 2, "security": 3, "service": 4, "analytics": 4,
         "backup": 4, "quality": 4, "training": 4, "web": 5, "mllp": 5, "devices": 5, "cli": 6,
         "app": 6}


def _top(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "medarchive" and len(parts) > 1 else None


def test_imports_point_down() -> None:
    problems = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        own = rel.parts[0].removesuffix(".py")
        if own == "__init__" or own not in LAYER:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = _top(name)
                if top and top in LAYER and LAYER[top] > LAYER[own] and top != own:
                    problems.append(f"{rel}: imports {name} (layer {top} above {own})")
    assert not problems, "\n".join(problems)


def test_every_module_has_a_docstring() -> None:
    missing = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
               if p.stat().st_size and ast.get_docstring(ast.parse(p.read_text())) is None]
    assert not missing, f"modules without a docstring: {missing}"
