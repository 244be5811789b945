"""SQL on FHIR v2 views: the record as tables, on the pure-Python evaluator, DuckDB or Spark.

``run_view(view, resources, engine)`` evaluates a ViewDefinition; ``compile_view`` shows the
SQL; ``materialize`` writes a view into a DuckDB file. See docs/analytics.md.
"""

from medarchive.analytics import duckdb_engine, spark_engine
from medarchive.analytics.compile import CannotCompile, CompiledView, compile_view
from medarchive.analytics.duckdb_engine import materialize, materialize_ndjson
from medarchive.analytics.runner import ENGINES, run_view
from medarchive.analytics.viewdef import ViewDefinition, ViewError, parse_view

__all__ = [
    "ENGINES",
    "CannotCompile",
    "CompiledView",
    "ViewDefinition",
    "ViewError",
    "compile_view",
    "duckdb_engine",
    "materialize",
    "materialize_ndjson",
    "parse_view",
    "run_view",
    "spark_engine",
]
