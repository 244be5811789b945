"""``run_view``: one entry point for the three view engines, returning the same rows.

The issue asks for ``run_view(view, resources, engine)`` with engines ``python`` (the
reference evaluator), ``duckdb`` and ``spark`` (one compiled SQL query each). Whatever the
engine, rows come back as dicts in column order with the Python values of ``columns.py``, so
results can be compared across engines directly (as the conformance tests do).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from medarchive.analytics import duckdb_engine
from medarchive.analytics.columns import coerce
from medarchive.analytics.compile import CompiledView, compile_view
from medarchive.analytics.evaluate import evaluate_view
from medarchive.analytics.viewdef import ViewDefinition, parse_view

ENGINES = ("python", "duckdb", "spark")


def run_view(view: ViewDefinition | dict[str, Any], resources: Iterable[dict[str, Any]],
             engine: str = "python", *, spark: Any = None) -> list[dict[str, Any]]:
    """Evaluate a ViewDefinition over FHIR resources (SQL on FHIR v2 §ViewDefinition).

    ``view`` is ViewDefinition JSON or a parsed model; ``resources`` any iterable of FHIR R4
    resources (other types than the view's are skipped). ``engine`` is ``python``,
    ``duckdb`` or ``spark`` (``spark`` uses the given SparkSession or the process's local
    one). Raises ``ViewError`` for an invalid view or a failure while evaluating, and
    ``CannotCompile`` when a SQL engine cannot translate the view's FHIRPath.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    model = view if isinstance(view, ViewDefinition) else parse_view(view)
    if engine == "python":
        return list(evaluate_view(model, resources))
    if engine == "duckdb":
        compiled = compile_view(model, "duckdb")
        con = duckdb_engine.connect()
        try:
            duckdb_engine.create_table(con)
            duckdb_engine.load(con, resources, resource_type=model.resource)
            return rows_of(compiled, duckdb_engine.execute(con, compiled))
        finally:
            con.close()
    from medarchive.analytics import spark_engine
    session = spark if spark is not None else spark_engine.session()
    with spark_engine.resource_source(session, resources, model.resource) as source:
        compiled = compile_view(model, "spark", source=source)
        return rows_of(compiled, spark_engine.execute(session, compiled))


def rows_of(compiled: CompiledView, records: Iterable[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Turn database records into row dicts with the Python values of each column's kind."""
    columns = compiled.columns
    out = []
    for record in records:
        row = {}
        for col, value in zip(columns, record, strict=True):
            if col.collection:
                row[col.name] = [coerce(v, col.kind) for v in value or ()]
            else:
                row[col.name] = coerce(value, col.kind)
        out.append(row)
    return out
