"""Runs compiled views on Apache Spark (pyspark), the engine for data beyond one machine.

The view is the same single SQL query as for DuckDB, in the Spark dialect, over a DataFrame
``(resource_type STRING, resource STRING)``. In tests and on a laptop Spark runs in local
mode; ``master`` selects a cluster (the ``--spark-master`` setting). Nothing here downloads
packages or opens network ports beyond the local driver: the UI is off and the driver binds
to 127.0.0.1 unless a cluster master is given.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from medarchive.analytics.compile import CompiledView
from medarchive.analytics.dialects import Spark
from medarchive.analytics.viewdef import ViewError

_names = itertools.count()

LOCAL = "local[2]"


def session(master: str = LOCAL, app_name: str = "medarchive-views") -> Any:
    """The process's SparkSession, created on first use (pyspark keeps one per process)."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    local = master.startswith("local")
    if local:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = (SparkSession.builder.master(master).appName(app_name)
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.shuffle.partitions", "2"))
    if local:
        builder = (builder.config("spark.driver.host", "127.0.0.1")
                   .config("spark.driver.bindAddress", "127.0.0.1"))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("OFF")
    return spark


INLINE_LIMIT = 500   # up to this many resources travel inside the query as VALUES


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot serialise {type(value).__name__} as JSON")


@contextmanager
def resource_source(spark: Any, resources: Iterable[dict[str, Any]],
                    resource_type: str | None = None) -> Iterator[str]:
    """A relation ``(resource_type, resource)`` holding ``resources``, for one query.

    Small inputs become an inline ``VALUES`` list (no Python workers, no files); larger ones
    are written to a temporary NDJSON file that Spark reads. Yields the SQL relation.
    """
    d = Spark()
    wanted = (r for r in resources
              if resource_type is None or r.get("resourceType") == resource_type)
    head = list(itertools.islice(wanted, INLINE_LIMIT + 1))
    if len(head) <= INLINE_LIMIT:
        values = ", ".join(
            f"({d.string(str(r.get('resourceType')))}, "
            f"{d.string(orjson.dumps(r, default=_default).decode())})" for r in head)
        if not values:
            values = "(CAST(NULL AS STRING), CAST(NULL AS STRING))"
            yield ("(SELECT * FROM VALUES " + values +
                   " AS __r(resource_type, resource) WHERE resource IS NOT NULL)")
        else:
            yield f"(SELECT * FROM VALUES {values} AS __r(resource_type, resource))"
        return
    name = f"medarchive_resources_{next(_names)}"
    with tempfile.TemporaryDirectory(prefix="medarchive-spark-") as tmp:
        path = Path(tmp) / "resources.ndjson"
        with path.open("wb") as out:
            for resource in itertools.chain(head, wanted):
                out.write(orjson.dumps(resource, default=_default) + b"\n")
        ndjson_dataframe(spark, [str(path)]).createOrReplaceTempView(name)
        try:
            yield name
        finally:
            spark.catalog.dropTempView(name)


def ndjson_dataframe(spark: Any, paths: Sequence[str]) -> Any:
    """A DataFrame ``(resource_type, resource)`` reading NDJSON files line by line."""
    text = spark.read.text(list(paths))
    return text.selectExpr("get_json_object(value, '$.resourceType') AS resource_type",
                           "value AS resource")


def execute(spark: Any, compiled: CompiledView) -> list[tuple[Any, ...]]:
    """Run a compiled view; a failure inside the query becomes a ``ViewError``."""
    try:
        return [tuple(row) for row in spark.sql(compiled.sql).collect()]
    except Exception as exc:  # py4j/pyspark raise many classes; all mean the query failed
        if type(exc).__module__.startswith(("pyspark", "py4j")):
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ViewError(f"Spark could not run the view: {message}") from exc
        raise
