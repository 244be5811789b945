"""The SQL each engine speaks, behind one small vocabulary the view compiler writes in.

The compiler (``translate.py``, ``compile.py``) never spells SQL functions itself: it asks the
dialect for "the JSON value at this path", "this list filtered by that lambda", "a struct with
these fields", and so on. Two dialects exist: DuckDB (JSON functions on a VARCHAR/JSON column,
``list_*`` lambdas, 1-based lists) and Spark SQL (``get_json_object`` / ``from_json``, higher
order functions, 0-based lambda indexes, ANSI casts). Both represent a FHIR value the same way:
complex values and primitives read from JSON are text (``json_extract_string`` and
``get_json_object`` agree: strings unquoted, numbers and booleans as their JSON text, objects
as compact JSON), and computed values are typed (BOOLEAN, BIGINT, DOUBLE, VARCHAR/STRING).

A JSON path is a tuple of ``Step``: ``one`` (a single-valued element), ``many`` (an array to
flatten) or ``index`` (one position of an array).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Step:
    """One JSON property on a path; ``mode`` is ``one``, ``many`` or ``index``."""

    key: str
    mode: str = "one"
    index: int = 0


def json_path(steps: Sequence[Step], wildcard: bool = True) -> str:
    """``$.a[*].b[0]`` for the steps (FHIR element names need no quoting)."""
    out = "$"
    for step in steps:
        out += "." + step.key
        if step.mode == "many" and wildcard:
            out += "[*]"
        elif step.mode == "index":
            out += f"[{step.index}]"
    return out


class Dialect(ABC):
    """What both dialects share; subclasses fill in the engine-specific spelling."""

    name = "abstract"
    # SQL type of each column kind (see columns.py).
    types: dict[str, str] = {}

    # -- literals and identifiers ---------------------------------------------------------
    def string(self, text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    def ident(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def boolean(self, value: bool) -> str:
        return "TRUE" if value else "FALSE"

    def double(self, text: str) -> str:
        return f"CAST({self.string(text)} AS DOUBLE)"

    def null(self, kind: str) -> str:
        return f"CAST(NULL AS {self.types[kind]})"

    def cast(self, sql: str, kind: str) -> str:
        return f"CAST({sql} AS {self.types[kind]})"

    # -- what every engine spells its own way ----------------------------------------------
    # JSON: the value at a path of single-valued steps, or the flattened list of a path with
    # at least one ``many`` step (never NULL; empty when nothing is there).
    @abstractmethod
    def json_value(self, base: str, steps: Sequence[Step]) -> str: ...
    @abstractmethod
    def json_values(self, base: str, steps: Sequence[Step]) -> str: ...

    # Lists, with lambdas over their items (``index`` names the engine's position variable).
    @abstractmethod
    def empty(self, kind: str) -> str: ...
    @abstractmethod
    def list_of(self, items: Sequence[str]) -> str: ...
    @abstractmethod
    def transform(self, lst: str, var: str, body: str, index: str | None = None) -> str: ...
    @abstractmethod
    def filter(self, lst: str, var: str, cond: str) -> str: ...
    @abstractmethod
    def flatten(self, lst: str) -> str: ...
    @abstractmethod
    def concat(self, lists: Sequence[str]) -> str: ...
    @abstractmethod
    def size(self, lst: str) -> str: ...
    @abstractmethod
    def element(self, lst: str, index: int) -> str: ...
    @abstractmethod
    def element_at(self, lst: str, index0: str) -> str: ...
    @abstractmethod
    def index0(self, var: str) -> str: ...
    @abstractmethod
    def contains(self, lst: str, item: str) -> str: ...
    @abstractmethod
    def distinct(self, lst: str, var: str, idx: str) -> str: ...
    @abstractmethod
    def join(self, lst: str, sep: str) -> str: ...
    @abstractmethod
    def unnest(self, lst: str) -> str: ...

    # Rows as structs.
    @abstractmethod
    def struct(self, fields: Sequence[tuple[str, str]]) -> str: ...
    @abstractmethod
    def field(self, var: str, name: str) -> str: ...

    # Scalars.
    @abstractmethod
    def error(self, message: str) -> str: ...
    @abstractmethod
    def divide(self, a: str, b: str) -> str: ...
    @abstractmethod
    def int_div(self, a: str, b: str) -> str: ...
    @abstractmethod
    def mod(self, a: str, b: str) -> str: ...
    @abstractmethod
    def regex_group(self, text: str, pattern: str, group: int) -> str: ...
    @abstractmethod
    def length(self, text: str) -> str: ...
    @abstractmethod
    def substring(self, text: str, start0: str, length: str | None) -> str: ...

    # -- shared spellings -------------------------------------------------------------------
    def singleton(self, sql: str, kind: str) -> str:
        """A list holding ``sql``, or an empty list when it is NULL."""
        return f"CASE WHEN {sql} IS NULL THEN {self.empty(kind)} ELSE {self.list_of([sql])} END"

    def not_null(self, lst: str, var: str) -> str:
        return self.filter(lst, var, f"{var} IS NOT NULL")

    def root_path_pattern(self, column: str) -> re.Pattern[str] | None:
        """How a single-valued path read from ``column`` is spelled, when the dialect can
        read many paths with one parse (see ``json_values_at``); None otherwise."""
        return None

    def json_values_at(self, base: str, paths: Sequence[str]) -> str:
        raise NotImplementedError(f"{self.name} reads JSON paths one at a time")


class DuckDB(Dialect):
    """DuckDB (>= 1.3): JSON extension functions and Python-style lambdas."""

    name = "duckdb"
    types = {"boolean": "BOOLEAN", "integer": "BIGINT", "decimal": "DOUBLE",
             "string": "VARCHAR", "json": "VARCHAR"}

    def json_value(self, base: str, steps: Sequence[Step]) -> str:
        return f"json_extract_string({base}, {self.string(json_path(steps))})"

    def json_values(self, base: str, steps: Sequence[Step]) -> str:
        # A wildcard path returns a (possibly empty) list, NULL only for a NULL document.
        return f"coalesce(json_extract_string({base}, {self.string(json_path(steps))}), " \
               f"{self.empty('string')})"

    def root_path_pattern(self, column: str) -> re.Pattern[str] | None:
        return re.compile(r"json_extract_string\(" + re.escape(column) + r", '(\$[^'*]*)'\)")

    def json_values_at(self, base: str, paths: Sequence[str]) -> str:
        return f"json_extract_string({base}, [{', '.join(self.string(p) for p in paths)}])"

    def empty(self, kind: str) -> str:
        return f"CAST([] AS {self.types[kind]}[])"

    def list_of(self, items: Sequence[str]) -> str:
        return "[" + ", ".join(items) + "]"

    def transform(self, lst: str, var: str, body: str, index: str | None = None) -> str:
        params = f"{var}, {index}" if index else var
        return f"list_transform({lst}, lambda {params}: {body})"

    def filter(self, lst: str, var: str, cond: str) -> str:
        return f"list_filter({lst}, lambda {var}: {cond})"

    def flatten(self, lst: str) -> str:
        return f"flatten({lst})"

    def concat(self, lists: Sequence[str]) -> str:
        out = lists[0]
        for other in lists[1:]:
            out = f"list_concat({out}, {other})"
        return out

    def size(self, lst: str) -> str:
        return f"coalesce(len({lst}), 0)"

    def element(self, lst: str, index: int) -> str:
        return f"{lst}[{index + 1 if index >= 0 else index}]"

    def element_at(self, lst: str, index0: str) -> str:
        return f"{lst}[({index0}) + 1]"

    def index0(self, var: str) -> str:
        return f"({var} - 1)"

    def struct(self, fields: Sequence[tuple[str, str]]) -> str:
        return "struct_pack(" + ", ".join(f"{self.ident(n)} := {s}" for n, s in fields) + ")"

    def field(self, var: str, name: str) -> str:
        return f"{var}.{self.ident(name)}"

    def error(self, message: str) -> str:
        return f"error({self.string(message)})"

    def divide(self, a: str, b: str) -> str:
        return f"(CAST({a} AS DOUBLE) / nullif(CAST({b} AS DOUBLE), 0))"

    def int_div(self, a: str, b: str) -> str:
        return f"({a} // nullif({b}, 0))"

    def mod(self, a: str, b: str) -> str:
        return f"({a} % nullif({b}, 0))"

    def join(self, lst: str, sep: str) -> str:
        return f"coalesce(array_to_string({lst}, {sep}), '')"

    def contains(self, lst: str, item: str) -> str:
        return f"list_contains({lst}, {item})"

    def regex_group(self, text: str, pattern: str, group: int) -> str:
        return f"regexp_extract({text}, {self.string(pattern)}, {group})"

    def distinct(self, lst: str, var: str, idx: str) -> str:
        return f"list_filter({lst}, lambda {var}, {idx}: list_position({lst}, {var}) = {idx})"

    def length(self, text: str) -> str:
        return f"length({text})"

    def substring(self, text: str, start0: str, length: str | None) -> str:
        if length is None:
            return f"substring({text}, ({start0}) + 1)"
        return f"substring({text}, ({start0}) + 1, {length})"

    def unnest(self, lst: str) -> str:
        return f"unnest({lst})"


class Spark(Dialect):
    """Spark SQL 3.4+/4.x with ANSI mode on: higher-order functions and JSON functions."""

    name = "spark"
    types = {"boolean": "BOOLEAN", "integer": "BIGINT", "decimal": "DOUBLE",
             "string": "STRING", "json": "STRING"}

    def string(self, text: str) -> str:
        # Spark string literals treat backslash as an escape character.
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    def ident(self, name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def json_value(self, base: str, steps: Sequence[Step]) -> str:
        return f"get_json_object({base}, {self.string(json_path(steps))})"

    def json_values(self, base: str, steps: Sequence[Step]) -> str:
        # get_json_object's wildcard unwraps single matches, so arrays are read with
        # from_json(..., 'array<string>') one level at a time.
        first = next(i for i, s in enumerate(steps) if s.mode == "many")
        array = (f"from_json(get_json_object({base}, "
                 f"{self.string(json_path(steps[:first + 1], wildcard=False))}), "
                 "'array<string>')")
        array = f"coalesce({array}, {self.empty('string')})"
        rest = steps[first + 1:]
        var = f"__j{len(steps)}_{first}"
        if not rest:
            return array
        if any(s.mode == "many" for s in rest):
            return self.flatten(self.transform(array, var, self.json_values(var, rest)))
        return self.not_null(self.transform(array, var, self.json_value(var, rest)), var + "n")

    def empty(self, kind: str) -> str:
        return f"CAST(array() AS ARRAY<{self.types[kind]}>)"

    def list_of(self, items: Sequence[str]) -> str:
        return "array(" + ", ".join(items) + ")"

    def transform(self, lst: str, var: str, body: str, index: str | None = None) -> str:
        params = f"({var}, {index})" if index else var
        return f"transform({lst}, {params} -> {body})"

    def filter(self, lst: str, var: str, cond: str) -> str:
        return f"filter({lst}, {var} -> {cond})"

    def flatten(self, lst: str) -> str:
        return f"flatten({lst})"

    def concat(self, lists: Sequence[str]) -> str:
        return lists[0] if len(lists) == 1 else "concat(" + ", ".join(lists) + ")"

    def size(self, lst: str) -> str:
        return f"coalesce(size({lst}), 0)"

    def element(self, lst: str, index: int) -> str:
        return f"try_element_at({lst}, {index + 1 if index >= 0 else index})"

    def element_at(self, lst: str, index0: str) -> str:
        return f"try_element_at({lst}, CAST(({index0}) + 1 AS INT))"

    def index0(self, var: str) -> str:
        return f"CAST({var} AS BIGINT)"

    def struct(self, fields: Sequence[tuple[str, str]]) -> str:
        return "named_struct(" + ", ".join(f"{self.string(n)}, {s}" for n, s in fields) + ")"

    def field(self, var: str, name: str) -> str:
        return f"{var}.{self.ident(name)}"

    def error(self, message: str) -> str:
        return f"raise_error({self.string(message)})"

    def divide(self, a: str, b: str) -> str:
        return f"try_divide(CAST({a} AS DOUBLE), CAST({b} AS DOUBLE))"

    def int_div(self, a: str, b: str) -> str:
        return f"({a} div nullif({b}, 0))"

    def mod(self, a: str, b: str) -> str:
        return f"try_mod({a}, nullif({b}, 0))"

    def join(self, lst: str, sep: str) -> str:
        return f"coalesce(array_join({lst}, {sep}), '')"

    def contains(self, lst: str, item: str) -> str:
        return f"array_contains({lst}, {item})"

    def regex_group(self, text: str, pattern: str, group: int) -> str:
        return f"regexp_extract({text}, {self.string(pattern)}, {group})"

    def distinct(self, lst: str, var: str, idx: str) -> str:
        return f"array_distinct({lst})"

    def length(self, text: str) -> str:
        return f"char_length({text})"

    def substring(self, text: str, start0: str, length: str | None) -> str:
        if length is None:
            return f"substring({text}, ({start0}) + 1)"
        return f"substring({text}, ({start0}) + 1, {length})"

    def unnest(self, lst: str) -> str:
        return f"explode({lst})"


DIALECTS: dict[str, Dialect] = {"duckdb": DuckDB(), "spark": Spark()}


def dialect(name: str) -> Dialect:
    """The dialect called ``name`` (``duckdb`` or ``spark``)."""
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown SQL dialect {name!r}; expected one of "
                         f"{', '.join(DIALECTS)}") from None
