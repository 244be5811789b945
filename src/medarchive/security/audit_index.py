"""Search of the audit trail: the R4 AuditEvent search parameters as SQL over indexed columns.

Each event's searchable values are extracted once (``index_rows``) into ``audit_ref`` (parameter,
value, system, seq; by ``audit_backlog``, behind the commit) and ``audit_event.recorded_us`` (when
it is appended; migration 0011 back-filled older rows with the same rules in SQL). A search
(``parse_audit_search``) then becomes one statement (``search_sql``): every parameter an
``seq IN (...)`` over the ``audit_ref`` primary key, ``date`` a range on ``recorded_us``;
nothing scans JSON bodies.
``patient`` is answered from the ``entity`` rows (its values are exactly the entity references
of type Patient), so new events get no ``patient`` rows of their own: they were a third of a
search event's index rows and of the CPU of its commit (the rows migration 0011 back-filled
stay, unused).

Parameters (R4 AuditEvent, §6.4.5 Search Parameters): ``date`` (with prefixes), ``agent``
(agent.who: our identifier value or a reference), ``altid``, ``agent-name`` and ``address``
(string: case-insensitive prefix), ``agent-role`` (token; our roles are ``role.text``),
``entity``, ``patient`` (reference: ``Patient/x`` or ``x``), ``action``, ``subtype``,
``outcome``, ``type``, ``purpose`` (purposeOfEvent and agent.purposeOfUse) and the result
parameters ``_count``, ``_sort`` (``date``/``-date``), ``_offset``, ``_after`` (a record number)
and ``_summary=count``. Comma-separated values are ORed, repeated parameters ANDed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from medarchive.errors import BadRequest
from medarchive.fhir.search.dates import date_range
from medarchive.fhir.search.values import date, split_values, token, unescape

TOKENS = frozenset({"action", "outcome", "type", "subtype", "purpose", "agent-role", "altid"})
REFERENCES = frozenset({"agent", "entity", "patient"})
STRINGS = frozenset({"agent-name", "address"})
RESULT = frozenset({"_count", "_sort", "_offset", "_after", "_summary", "_format"})
HIGHEST = "\U0010ffff"
MAX_COUNT = 1000


def _codings(value: Any) -> Iterator[dict[str, Any]]:
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, dict):
            yield item


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _obj(value: Any, key: str) -> dict[str, Any]:
    found = value.get(key) if isinstance(value, dict) else None
    return found if isinstance(found, dict) else {}


Row = tuple[str, str, str]  # (parameter, value, system)
# the elements index_rows reads besides ``entity``: what the events of one actor's
# interactions of one kind share (audit_backlog extracts their rows once per distinct value)
SHARED = ("action", "outcome", "type", "subtype", "purposeOfEvent", "agent")


def _add(rows: set[Row], name: str, value: Any, system: Any = "", lower: bool = False) -> None:
    if isinstance(value, str):
        rows.add((name, value.lower() if lower else value,
                  system if isinstance(system, str) else ""))


def _codes(rows: set[Row], name: str, value: Any) -> None:
    for coding in _codings(value):
        _add(rows, name, coding.get("code"), coding.get("system") or "")


def index_rows(event: dict[str, Any],
               shared: Callable[[dict[str, Any]], Iterable[Row]] | None = None) -> set[Row]:
    """(parameter, value, system) rows of one AuditEvent, as migration 0011 derives them
    (except ``patient``: see the module docstring). ``shared``: what gives the rows of the
    ``SHARED`` elements (default ``shared_rows``; ``audit_backlog`` remembers them)."""
    return entity_rows(event).union((shared or shared_rows)(event))


def shared_rows(event: dict[str, Any]) -> set[Row]:
    """The rows of ``event``'s ``SHARED`` elements."""
    rows: set[Row] = set()
    _add(rows, "action", event.get("action"))
    _add(rows, "outcome", event.get("outcome"))
    _codes(rows, "type", event.get("type"))
    _codes(rows, "subtype", event.get("subtype"))
    for purpose in _codings(event.get("purposeOfEvent")):
        _codes(rows, "purpose", purpose.get("coding"))
    for agent in _codings(event.get("agent")):
        who = _obj(agent, "who")
        identifier = _obj(who, "identifier")
        _add(rows, "agent", identifier.get("value"))
        _add(rows, "agent", who.get("reference"))
        _add(rows, "altid", agent.get("altId"))
        _add(rows, "agent-name", agent.get("name"), lower=True)
        network = _obj(agent, "network")
        _add(rows, "address", network.get("address"), lower=True)
        for role in _codings(agent.get("role")):
            _add(rows, "agent-role", role.get("text"))
            _codes(rows, "agent-role", role.get("coding"))
        for purpose in _codings(agent.get("purposeOfUse")):
            _codes(rows, "purpose", purpose.get("coding"))
    return rows


def entity_rows(event: dict[str, Any]) -> set[Row]:
    """The rows of ``event``'s entities (the ``entity`` parameter)."""
    rows: set[Row] = set()
    for entity in _codings(event.get("entity")):
        _add(rows, "entity", _text(_obj(entity, "what").get("reference")))
    return rows


def recorded_us(event: dict[str, Any], fallback_s: int) -> int:
    """AuditEvent.recorded in epoch microseconds (the ``date`` parameter's column)."""
    try:
        return date_range(str(event.get("recorded")))[0]
    except (ValueError, OverflowError):
        return fallback_s * 1_000_000


@dataclass(frozen=True, slots=True)
class AuditSearch:
    """A parsed AuditEvent search: SQL conditions with their parameters, and the page."""

    where: tuple[tuple[str, tuple[Any, ...]], ...]
    count: int = 50
    offset: int = 0
    after: int = 0
    sort: str = "seq"  # seq (record order), date or -date
    summary_count: bool = False


def _int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, not {text[:40]!r}") from None


def _ref_values(text: str) -> list[str]:
    """A reference search value and the stored forms it matches: ``Patient/x`` also as the
    last two segments of an absolute URL; a bare id for ``patient`` means ``Patient/id``."""
    plain = unescape(text)
    if "://" in plain:
        parts = plain.rstrip("/").split("/")
        return [plain, "/".join(parts[-2:])] if len(parts) >= 2 else [plain]
    return [plain]


def _condition(name: str, modifier: str | None, values: Sequence[str]
               ) -> tuple[str, tuple[Any, ...]]:
    if name == "date":
        if modifier is not None:
            raise BadRequest(f"date does not take the :{modifier} modifier")
        parts: list[str] = []
        moments: list[int] = []
        for text in values:
            value = date(text)
            sql, bound = _date_sql(value.prefix, int(value.low), int(value.high))
            parts.append(sql)
            moments += bound
        return "(" + " OR ".join(parts) + ")", tuple(moments)
    if modifier is not None:
        raise BadRequest(f"the :{modifier} modifier is not supported on AuditEvent {name}")
    clauses: list[str] = []
    params: list[Any] = []
    for text in values:
        if name in TOKENS:
            found = token(text)
            if not found.code and not found.system:
                raise BadRequest(f"empty {name} value")
            sub = []
            if found.code is not None:
                sub.append("value = ?")
                params.append(found.code)
            if found.system is not None:
                sub.append("system = ?")
                params.append(found.system)
            clauses.append("(" + " AND ".join(sub) + ")")
        elif name in STRINGS:
            low = unescape(text).lower()
            clauses.append("(value >= ? AND value < ?)")
            params += [low, low + HIGHEST]
        else:
            refs = _ref_values(text)
            if name == "patient":  # the entity references of type Patient
                refs = [ref for ref in refs if ref.startswith("Patient/")] \
                    if "/" in refs[0] else [f"Patient/{refs[0]}"]
            if not refs:
                clauses.append("1 = 0")
                continue
            clauses.append("value IN (" + ", ".join("?" * len(refs)) + ")")
            params += refs
    sql = ("seq IN (SELECT seq FROM audit_ref WHERE name = ? AND ("
           + " OR ".join(clauses) + "))")
    return sql, ("entity" if name == "patient" else name, *params)


def _date_sql(prefix: str, low: int, high: int) -> tuple[str, list[int]]:
    """R4 §3.1.1.5.7 prefixes for a stored instant t against the searched range [low, high]."""
    table = {"eq": ("recorded_us >= ? AND recorded_us <= ?", [low, high]),
             "ap": ("recorded_us >= ? AND recorded_us <= ?", [low, high]),
             "ne": ("NOT (recorded_us >= ? AND recorded_us <= ?)", [low, high]),
             "gt": ("recorded_us > ?", [high]), "sa": ("recorded_us > ?", [high]),
             "lt": ("recorded_us < ?", [low]), "eb": ("recorded_us < ?", [low]),
             "ge": ("recorded_us >= ?", [low]), "le": ("recorded_us <= ?", [high])}
    sql, params = table[prefix]
    return f"({sql})", params


def parse_audit_search(params: Sequence[tuple[str, str]]) -> AuditSearch:
    """The AuditEvent search in ``params``; 400 for unknown parameters and bad values."""
    where: list[tuple[str, tuple[Any, ...]]] = []
    count, offset, after, sort, summary = 50, 0, 0, "seq", False
    for raw_name, value in params:
        name, _, modifier = raw_name.partition(":")
        if name == "_count":
            count = min(max(_int(name, value), 0), MAX_COUNT)
        elif name == "_offset":
            offset = max(_int(name, value), 0)
        elif name == "_after":
            after = max(_int(name, value), 0)
        elif name == "_sort":
            if value not in ("date", "-date"):
                raise BadRequest("AuditEvent supports _sort=date and _sort=-date only")
            sort = value
        elif name == "_summary":
            if value not in ("count", "false"):
                raise BadRequest("AuditEvent supports _summary=count only")
            summary = value == "count"
        elif name == "_format":
            continue
        elif name == "date" or name in TOKENS or name in REFERENCES or name in STRINGS:
            values = [v for v in split_values(value) if v != ""]
            if not values:
                raise BadRequest(f"{name} needs a value")
            where.append(_condition(name, modifier or None, values))
        else:
            raise BadRequest(f"unsupported AuditEvent search parameter {raw_name[:60]!r}")
    return AuditSearch(tuple(where), count, offset, after, sort, summary)


def search_sql(search: AuditSearch) -> tuple[str, list[Any], str, list[Any]]:
    """(page SQL, its parameters, count SQL, its parameters) for ``search``; the page selects
    seq and body."""
    clauses = [sql for sql, _ in search.where]
    params: list[Any] = [p for _, bound in search.where for p in bound]
    if search.after:
        clauses.append("seq > ?")
        params.append(search.after)
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    order = {"seq": "seq", "date": "recorded_us, seq",
             "-date": "recorded_us DESC, seq DESC"}[search.sort]
    page = (f"SELECT seq, body FROM audit_event{where} ORDER BY {order} LIMIT ? OFFSET ?")
    total = f"SELECT COUNT(*) FROM audit_event{where}"
    return page, [*params, search.count, search.offset], total, params

