"""SqlStore: the Store protocol on SQLite or PostgreSQL.

Tables (see ``migrations/``): ``resource`` holds one row per resource with its current version
(the optimistic-lock anchor), ``resource_version`` every version ever written (append-only, with a
global ``seq``), and ``idx_*`` the search index of current versions only. A write is one database
transaction: new resources are claimed with ``INSERT ... ON CONFLICT DO NOTHING``, existing ones
advanced with ``UPDATE ... WHERE version = expected``; a row that does not come back means another
writer got there first, and the whole transaction rolls back with ``VersionConflict``.

With ``encryption`` (docs/encryption.md) every body is sealed with AES-256-GCM under its patient
compartment's data key before it is written (``resource_version.kid`` names the key) and opened
on the way out, and the index rows that identify a patient are written and searched as blind
indexes; callers see the same plaintext Versions either way. A version whose data key was
shredded reads as ``Erased`` (410), appears in history and the change feed as a deletion, and
is left out of search results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from medarchive.crypto.encryption import Encryption
from medarchive.crypto.envelope import (
    Erased,
    KeyUnavailable,
    body_aad,
    is_sealed,
    open_sealed,
    seal,
    sealed_kid,
)
from medarchive.errors import AlreadyApplied, VersionConflict
from medarchive.fhir.search.entries import IndexEntries
from medarchive.fhir.search.query import Include, SearchQuery
from medarchive.fhir.vitalsigns import LOINC
from medarchive.store.base import (
    Change,
    HistoryQuery,
    Indexer,
    ReindexCallback,
    ReindexProgress,
    Version,
    from_micros,
    to_micros,
)
from medarchive.store.sql.chains import ensure_chained
from medarchive.store.sql.crypto import Draft, Keyring, erased_message
from medarchive.store.sql.database import Database
from medarchive.store.sql.datesort import PROBE, probe_query, range_rows_sql, sortable
from medarchive.store.sql.indexing import (
    IndexRows,
    estimate_sql,
    index_rows,
    insert_index,
    replace_index,
    run_reindex,
)
from medarchive.store.sql.latest import SOURCES as LATEST_SOURCES
from medarchive.store.sql.latest import ensure_built
from medarchive.store.sql.migrations import migrate
from medarchive.store.sql.query import (
    KEY_COLUMNS,
    KEY_JOIN,
    SELECT_VERSION,
    VERSION_COLUMNS,
    bounded_count_sql,
    count_sql,
    include_sql,
    matches_sql,
    search_sql,
)
from medarchive.store.sql.rows import rows_query

_CHUNK = 200
_FROM_DB: Any = object()
Sealed = tuple[bytes, int | None]
"""A version's body as stored (sealed or not) and the data key that sealed it."""


class SqlStore:
    """A Store on a SQL database; run ``migrate`` (done here at construction) before use.

    ``encryption`` defaults to the one the database was opened with (``db.encryption``), so a
    second store over the same database (bulk import's) encrypts alike."""

    def __init__(self, db: Database, indexer: Indexer, *, run_migrations: bool = True,
                 encryption: Encryption | None = _FROM_DB) -> None:
        self.db = db
        self._sql = db.sql
        if run_migrations:
            migrate(db)
            ensure_built(db)
        if encryption is _FROM_DB:
            encryption = getattr(db, "encryption", None)
        elif encryption is not None and hasattr(db, "encryption"):
            db.encryption = encryption  # type: ignore[attr-defined]
        self.keyring = Keyring(db, encryption) if encryption is not None else None
        if self.keyring is not None:
            self.keyring.blind.cover(getattr(indexer, "spec", None))
        self._indexer = indexer if self.keyring is None else self._blinding(indexer)
        if run_migrations and self.keyring is not None:
            ensure_chained(db, lambda job, types: run_reindex(
                db, self._indexer, job=job, batch=500, restart=False, progress=None,
                open_body=self._body, types=types))
        self.date_index = True
        """Date sorts and date-only counts read ``idx_date_sort`` (docs/search.md); False
        sorts every match as before (the same-run reference of benchmarks/search.py)."""
        self.date_probe = PROBE
        """A date sort whose other predicates match fewer resources sorts those instead."""

    def _blinding(self, indexer: Indexer) -> Indexer:
        blind = self.keyring.blind if self.keyring is not None else None
        assert blind is not None

        def index(resource: dict[str, Any]) -> IndexEntries:
            return blind.entries(resource["resourceType"], indexer(resource))
        return index

    def owner_of(self, body: bytes) -> str:
        """The data-key owner of a plaintext body (``keys reencrypt`` sealing old rows)."""
        assert self.keyring is not None
        resource = orjson.loads(body)
        return self.keyring.encryption.owner(resource["resourceType"], resource["id"],
                                             self._indexer(resource))

    def _body(self, row: Sequence[Any]) -> bytes | None:
        """The plaintext body of a (res_type, res_id, version, body, shredded) row (what
        ``run_reindex`` reads); None when its data key was shredded."""
        res_type, res_id, version, body, shredded = row
        if shredded is not None:
            return None
        body = bytes(body)
        if not is_sealed(body):
            return body
        try:
            aead = self._keyring().aead(sealed_kid(body))
        except Erased:
            return None
        return open_sealed(aead, body, body_aad(res_type, res_id, version))

    def _keyring(self) -> Keyring:
        if self.keyring is None:
            raise KeyUnavailable("this database holds encrypted records: open it with "
                                 "encryption = on and its key manager (docs/encryption.md)")
        return self.keyring

    def _open(self, row: Sequence[Any], erased: str = "raise") -> Version | None:
        """The Version of a ``VERSION_COLUMNS`` row. An erased one raises ``Erased``
        (``erased="raise"``), reads as a deletion (``"deleted"``) or is left out (``"skip"``)."""
        res_type, res_id, version, last_updated, deleted, body, seq, kid, shredded = row
        plain: bytes | None = None
        if shredded is None:
            plain = bytes(body)
            if is_sealed(plain):
                keyring = self.keyring or self._keyring()
                try:
                    plain = keyring.unseal(kid, plain, body_aad(res_type, res_id, version))
                except Erased:  # not remembered, and shredded since the row was read
                    plain = None
        if plain is None:
            if erased == "raise":
                raise Erased(erased_message(f"{res_type}/{res_id}", shredded))
            if erased == "skip":
                return None
            deleted, plain = True, b""
        return Version(res_type, res_id, version, from_micros(last_updated), bool(deleted),
                       plain, seq)

    def _opened(self, rows: Sequence[Sequence[Any]], erased: str) -> list[Version]:
        return [v for v in (self._open(row, erased) for row in rows) if v is not None]

    def read(self, resource_type: str, id: str) -> Version | None:
        with self.db.reading() as cur:
            cur.execute(self._sql(f"{SELECT_VERSION} WHERE r.res_type = ? AND r.res_id = ?"),
                        (resource_type, id))
            row = cur.fetchone()
        return self._open(row) if row else None

    def vread(self, resource_type: str, id: str, version_id: int) -> Version | None:
        sql = (f"SELECT {VERSION_COLUMNS} FROM resource r JOIN resource_version v "
               f"ON v.rid = r.rid{KEY_JOIN} "
               "WHERE r.res_type = ? AND r.res_id = ? AND v.version = ?")
        with self.db.reading() as cur:
            cur.execute(self._sql(sql), (resource_type, id, version_id))
            row = cur.fetchone()
        return self._open(row) if row else None

    def write(self, changes: Sequence[Change], *, idempotency_key: str | None = None,
              after: Callable[[Any, list[Version]], None] | None = None) -> list[Version]:
        """The Store contract; ``after(cursor, versions)`` runs last inside the same
        transaction (the interaction's AuditEvent: both commit or neither)."""
        if not changes and idempotency_key is None:
            return []
        entries = [IndexEntries() if c.deleted or c.resource is None else self._indexer(c.resource)
                   for c in changes]
        owner = self.keyring.encryption.owner if self.keyring is not None else None
        return self.write_prepared(
            changes, [index_rows(c.resource_type, found) for c, found in zip(changes, entries,
                                                                              strict=True)],
            [owner(c.resource_type, c.id, found) if owner is not None and c.body else None
             for c, found in zip(changes, entries, strict=True)],
            idempotency_key=idempotency_key, after=after)

    def index_entries(self, resource: dict[str, Any]) -> IndexEntries:
        """The search-index entries the store writes for ``resource`` (blinded when
        encrypting)."""
        return self._indexer(resource)

    def write_prepared(self, changes: Sequence[Change], rows: Sequence[IndexRows],
                       owners: Sequence[str | None], *, idempotency_key: str | None = None,
                       after: Callable[[Any, list[Version]], None] | None = None
                       ) -> list[Version]:
        """``write`` with each change's index rows (``indexing.index_rows`` of the entries
        ``index_entries`` gives) and data-key owner (``encryption.owner``; None for
        deletions) worked out by the caller: the bulk import does that in worker processes."""
        if not changes and idempotency_key is None:
            return []
        keys = {(c.resource_type, c.id) for c in changes}
        if len(keys) != len(changes):
            raise ValueError("a resource may change only once in one write")
        if self.keyring is not None and any(c.body and o is None
                                            for c, o in zip(changes, owners, strict=True)):
            raise ValueError("encrypting: every body needs its data-key owner")
        drafts, early = self._seal_early(changes, owners)
        with self.db.writing() as cur:
            if idempotency_key is not None:
                self._record_key(cur, idempotency_key, changes)
            rids = self._claim(cur, changes)
            sealed = self._seal(cur, changes, owners, drafts, early)
            seqs = self._insert_versions(cur, changes, rids, sealed)
            insert_index(cur, self._sql, [rid for change, rid in zip(changes, rids, strict=True)
                                          if change.expected_version],
                         list(zip(rids, rows, strict=True)))
            written = [Version(c.resource_type, c.id, c.version_id, c.last_updated, c.deleted,
                               c.body, seq) for c, seq in zip(changes, seqs, strict=True)]
            if after is not None:
                after(cur, written)
        return written

    def _record_key(self, cur: Any, key: str, changes: Sequence[Change]) -> None:
        at = to_micros(changes[0].last_updated) if changes else 0
        cur.execute(self._sql("INSERT INTO applied_key (key, applied_at) VALUES (?, ?) "
                              "ON CONFLICT (key) DO NOTHING RETURNING key"), (key, at))
        if cur.fetchone() is None:
            raise AlreadyApplied(key)

    def applied(self, idempotency_key: str) -> bool:
        with self.db.reading() as cur:
            cur.execute(self._sql("SELECT 1 FROM applied_key WHERE key = ?"), (idempotency_key,))
            return cur.fetchone() is not None

    def _conflict(self, cur: Any, change: Change) -> VersionConflict:
        cur.execute(self._sql("SELECT version FROM resource WHERE res_type = ? AND res_id = ?"),
                    (change.resource_type, change.id))
        row = cur.fetchone()
        return VersionConflict(change.resource_type, change.id, change.expected_version,
                               row[0] if row else None)

    def _claim(self, cur: Any, changes: Sequence[Change]) -> list[int]:
        """Advance (or create) each resource row; return the rids in change order. New
        resources are inserted many rows per statement (bulk writes create thousands)."""
        rids: dict[tuple[str, str], int] = {}
        update = self._sql(
            "UPDATE resource SET version = ?, last_updated = ?, deleted = ? "
            "WHERE res_type = ? AND res_id = ? AND version = ? RETURNING rid")
        created = [change for change in changes if change.expected_version == 0]
        for start in range(0, len(created), _CHUNK):
            chunk = created[start:start + _CHUNK]
            rows, params = rows_query(self.db.dialect, [
                (change.resource_type, change.id, change.version_id,
                 to_micros(change.last_updated), change.deleted) for change in chunk],
                ("text", "text", "int4", "int8", "bool"))
            cur.execute(self._sql(
                f"INSERT INTO resource (res_type, res_id, version, last_updated, deleted) {rows} "
                "ON CONFLICT (res_type, res_id) DO NOTHING RETURNING rid, res_type, res_id"),
                params)
            rids.update(((res_type, res_id), rid) for rid, res_type, res_id in cur.fetchall())
            for change in chunk:
                if (change.resource_type, change.id) not in rids:
                    raise self._conflict(cur, change)
        for change in changes:
            if change.expected_version == 0:
                continue
            cur.execute(update, (change.version_id, to_micros(change.last_updated),
                                 change.deleted, change.resource_type, change.id,
                                 change.expected_version))
            row = cur.fetchone()
            if row is None:
                raise self._conflict(cur, change)
            rids[(change.resource_type, change.id)] = row[0]
        return [rids[(change.resource_type, change.id)] for change in changes]

    def _seal_early(self, changes: Sequence[Change], owners: Sequence[str | None]
                    ) -> tuple[dict[str, Draft], list[Sealed | None]]:
        """Before the write transaction (no lock held): the owners' drafted keys
        (``Keyring.draft``; a Patient created here gets its new key) and the bodies sealed
        with them, None where an owner has no draft."""
        if self.keyring is None:
            return {}, []
        fresh = {o for c, o in zip(changes, owners, strict=True)
                 if c.expected_version == 0 and o == f"{c.resource_type}/{c.id}"}
        drafts = self.keyring.draft({o for o in owners if o is not None}, fresh)
        return drafts, self._sealed(changes, owners, {o: (d.kid, d.aead)
                                                      for o, d in drafts.items()})

    def _seal(self, cur: Any, changes: Sequence[Change], owners: Sequence[str | None],
              drafts: dict[str, Draft], early: list[Sealed | None]) -> list[Sealed]:
        """(stored body, kid) per change: sealed under its owner's data key when encrypting,
        as the transaction settles it (``Keyring.keys_for``); sealed early when that is the
        drafted key."""
        if self.keyring is None:
            return [(change.body, None) for change in changes]
        keys = self.keyring.keys_for(cur, {o for o in owners if o is not None}, drafts)
        sealed = self._sealed(changes, owners, keys, early)
        assert None not in sealed  # keys_for gives every owner a key
        return cast(list[Sealed], sealed)

    def _sealed(self, changes: Sequence[Change], owners: Sequence[str | None],
                keys: dict[str, tuple[int, AESGCM]], early: list[Sealed | None] | None = None
                ) -> list[Sealed | None]:
        """Each change's (stored body, kid) under its owner's key in ``keys`` (None when
        ``keys`` has none), taken from ``early`` when sealed there under the same key."""
        sealed: list[Sealed | None] = []
        for i, (change, name) in enumerate(zip(changes, owners, strict=True)):
            if name is None or not change.body:
                sealed.append((change.body, None))
            elif (key := keys.get(name)) is None:
                sealed.append(None)
            elif early and (done := early[i]) is not None and done[1] == key[0]:
                sealed.append(done)
            else:
                kid, aead = key
                aad = body_aad(change.resource_type, change.id, change.version_id)
                sealed.append((seal(aead, kid, change.body, aad), kid))
        return sealed

    def _insert_versions(self, cur: Any, changes: Sequence[Change], rids: list[int],
                         sealed: list[Sealed]) -> list[int]:
        seqs: list[int] = []
        for start in range(0, len(changes), _CHUNK):
            chunk = list(zip(changes[start:start + _CHUNK], rids[start:start + _CHUNK],
                             sealed[start:start + _CHUNK], strict=True))
            rows, params = rows_query(self.db.dialect, [
                (rid, change.version_id, to_micros(change.last_updated), change.deleted, body,
                 kid) for change, rid, (body, kid) in chunk],
                ("int8", "int4", "int8", "bool", "bytea", "int8"))
            cur.execute(self._sql("INSERT INTO resource_version "
                                  f"(rid, version, last_updated, deleted, body, kid) {rows} "
                                  "RETURNING rid, seq"), params)
            by_rid = dict(cur.fetchall())
            seqs += [by_rid[rid] for _, rid, _ in chunk]
        return seqs

    def _history_where(self, query: HistoryQuery) -> tuple[str, list[Any]]:
        clauses: list[str] = ["1=1"]
        params: list[Any] = []
        if query.resource_type:
            clauses.append("r.res_type = ?")
            params.append(query.resource_type)
        if query.id:
            clauses.append("r.res_id = ?")
            params.append(query.id)
        if query.since:
            clauses.append("v.last_updated >= ?")
            params.append(to_micros(query.since))
        if query.max_seq is not None:
            clauses.append("v.seq <= ?")
            params.append(query.max_seq)
        return " AND ".join(clauses), params

    def history(self, query: HistoryQuery) -> list[Version]:
        where, params = self._history_where(query)
        sql = (f"SELECT {VERSION_COLUMNS} FROM resource_version v JOIN resource r "
               f"ON r.rid = v.rid{KEY_JOIN} WHERE {where} ORDER BY v.seq DESC LIMIT ? OFFSET ?")
        with self.db.reading() as cur:
            cur.execute(self._sql(sql), [*params, query.count, query.offset])
            return self._opened(cur.fetchall(), "deleted")

    def history_total(self, query: HistoryQuery) -> int:
        where, params = self._history_where(query)
        with self.db.reading() as cur:
            cur.execute(self._sql("SELECT COUNT(*) FROM resource_version v JOIN resource r "
                                  f"ON r.rid = v.rid WHERE {where}"), params)
            return int(cur.fetchone()[0])

    @property
    def _blind(self) -> Any:
        return self.keyring.blind if self.keyring is not None else None

    def search(self, query: SearchQuery) -> list[Version]:
        by_date = self._date_index(query)
        sql, params = search_sql(query, self.db.dialect, self._blind, date_index=by_date)
        # a page read in date order probes a few hundred index entries: starting parallel
        # workers for it (PostgreSQL's choice when it misjudges a filter) costs far more
        serial = by_date and self.db.dialect == "postgresql"
        with self.db.reading() as cur:
            if serial:
                cur.execute("SET max_parallel_workers_per_gather = 0")
            try:
                cur.execute(self._sql(sql), params)
                rows = cur.fetchall()
            finally:
                if serial:
                    cur.execute("RESET max_parallel_workers_per_gather")
            return self._opened(rows, "skip")

    def _date_index(self, query: SearchQuery) -> bool:
        """Whether a date sort reads ``idx_date_sort`` in order: yes when its date predicates
        bound that read to fewer than ``date_probe`` rows, else unless the other predicates
        match fewer than ``date_probe`` resources (sorting those is faster)."""
        key = sortable(query, self._blind) if self.date_index else None
        if key is None:
            return False
        others = probe_query(query, key)
        if others is None or self.date_probe <= 0:
            return True
        bounded = range_rows_sql(query, key, self.date_probe)
        with self.db.reading() as cur:
            if bounded is not None:
                cur.execute(self._sql(bounded[0]), bounded[1])
                if int(cur.fetchone()[0]) < self.date_probe:
                    return True
            sql, params = matches_sql(others, self.db.dialect, distinct=False,
                                      blind=self._blind)
            cur.execute(self._sql(f"SELECT COUNT(*) FROM ({sql} LIMIT ?) m"),
                        [*params, self.date_probe])
            return int(cur.fetchone()[0]) >= self.date_probe

    def count(self, query: SearchQuery, limit: int | None = None) -> int:
        """The exact count; with ``limit`` on PostgreSQL, counting stops at ``limit``. SQLite
        has no planner estimate to fall back on beyond it, so it always counts exactly."""
        if limit is not None and self.db.dialect == "postgresql":
            sql, params = bounded_count_sql(query, limit, self.db.dialect, self._blind)
        else:
            sql, params = count_sql(query, self.db.dialect, self._blind,
                                    date_index=self.date_index)
        with self.db.reading() as cur:
            cur.execute(self._sql(sql), params)
            return int(cur.fetchone()[0])

    def estimate(self, query: SearchQuery) -> int:
        """PostgreSQL: the planner's row estimate; SQLite has none, so the exact count."""
        if self.db.dialect != "postgresql":
            return self.count(query)
        sql, params = estimate_sql(query, self.db.dialect, self._blind)
        with self.db.reading() as cur:
            cur.execute(self._sql(sql), params)
            plan = cur.fetchone()[0]
        return int(plan[0]["Plan"]["Plan Rows"])

    def latest_vital_signs(self, patient: str) -> dict[str, Version]:
        """Read from ``latest_observation`` (``store.sql.latest``), not searched."""
        target_type, _, target_id = patient.partition("/")
        if target_type != "Patient":
            return {}
        with self.db.reading() as cur:
            cur.execute(self._sql(
                f"SELECT l.code, {VERSION_COLUMNS} FROM latest_observation l "
                "JOIN resource r ON r.rid = l.rid JOIN resource_version v ON v.rid = r.rid "
                f"AND v.version = r.version{KEY_JOIN} WHERE l.patient = ? AND l.system = ? "
                "AND r.deleted = ?"), (target_id, LOINC, False))
            rows = cur.fetchall()
        found = {}
        for code, *columns in rows:
            version = self._open(columns, "skip")
            if version is not None:
                found[str(code)] = version
        return found

    def include(self, keys: Sequence[tuple[str, str]], include: Include,
                limit: int) -> list[Version]:
        if not keys or limit <= 0:
            return []
        found: dict[tuple[str, str], Version] = {}
        for start in range(0, len(keys), _CHUNK * 4):
            sql, params = include_sql(keys[start:start + _CHUNK * 4], include, limit,
                                      self.db.dialect)
            with self.db.reading() as cur:
                cur.execute(self._sql(sql), params)
                for version in self._opened(cur.fetchall(), "skip"):
                    found.setdefault((version.resource_type, version.id), version)
        return list(found.values())[:limit]

    def reindex(self, *, job: str = "reindex", batch: int = 500, restart: bool = False,
                progress: ReindexCallback | None = None,
                resource_type: str | None = None) -> ReindexProgress:
        return run_reindex(self.db, self._indexer, job=job, batch=batch, restart=restart,
                           progress=progress, open_body=self._body,
                           resource_type=resource_type)

    def reindex_param(self, indexer: Indexer, param: str, types: Sequence[str], *,
                      job: str, batch: int = 500, restart: bool = False,
                      progress: ReindexCallback | None = None) -> ReindexProgress:
        """Re-extract only ``param``'s index rows of the current resources of ``types``
        (``db reindex --param``); ``indexer`` extracts that parameter alone."""
        from medarchive.store.sql.paramindex import param_replacer
        state = run_reindex(self.db, self._blinding(indexer) if self.keyring else indexer,
                            job=job, batch=batch, restart=restart, progress=progress,
                            open_body=self._body, types=types, replace=param_replacer(param))
        if state.finished and param in LATEST_SOURCES and (not types or "Observation" in types):
            ensure_built(self.db, again=True)
        return state

    def reindex_rids(self, rids: Sequence[int]) -> int:
        """Re-extract the index rows of the resources ``rids`` (a restore's changed ones), one
        transaction per chunk; deleted and erased resources are left without rows."""
        indexed = 0
        for start in range(0, len(rids), _CHUNK):
            chunk = list(rids[start:start + _CHUNK])
            with self.db.writing() as cur:
                cur.execute(self._sql(
                    f"SELECT r.rid, {VERSION_COLUMNS} FROM resource r JOIN resource_version v "
                    f"ON v.rid = r.rid AND v.version = r.version{KEY_JOIN} "
                    f"WHERE r.deleted = ? AND r.rid IN ({', '.join('?' * len(chunk))})"),
                    [False, *chunk])
                items = []
                for rid, *row in cur.fetchall():
                    version = self._open(row, "skip")
                    if version is not None:
                        items.append((rid, version.resource_type,
                                      self._indexer(version.resource())))
                replace_index(cur, self._sql, chunk, items)
                indexed += len(items)
        return indexed

    def changes(self, after_seq: int = 0, limit: int = 1000) -> list[Version]:
        sql = (f"SELECT {VERSION_COLUMNS} FROM resource_version v JOIN resource r "
               f"ON r.rid = v.rid{KEY_JOIN} WHERE v.seq > ? ORDER BY v.seq LIMIT ?")
        with self.db.reading() as cur:
            cur.execute(self._sql(sql), (after_seq, limit))
            return self._opened(cur.fetchall(), "deleted")

    def change_keys(self, after_seq: int = 0, limit: int = 1000) -> list[tuple[int, str, str]]:
        sql = ("SELECT v.seq, r.res_type, r.res_id FROM resource_version v JOIN resource r "
               "ON r.rid = v.rid WHERE v.seq > ? ORDER BY v.seq LIMIT ?")
        with self.db.reading() as cur:
            cur.execute(self._sql(sql), (after_seq, limit))
            return [(int(seq), rtype, rid) for seq, rtype, rid in cur.fetchall()]

    def current_versions(self, after_seq: int, max_seq: int, limit: int,
                         types: Sequence[str] | None = None) -> tuple[int, list[Version]]:
        """The current, undeleted versions (of ``types``; None: every type) among the next
        ``limit`` changes after ``after_seq`` (up to ``max_seq``), in change order, and the
        sequence number read up to; erased ones are left out. One keyset query per page (the
        page of changes is selected first, so the database reads ``limit`` of them in key
        order): what a full export reads."""
        typed = f" AND r.res_type IN ({', '.join('?' * len(types))})" if types else ""
        current = f"r.rid = v.rid AND r.version = v.version AND r.deleted = ?{typed}"
        # PostgreSQL: a lateral lookup by key, so a plan made before statistics exist (right
        # after a load) cannot hash the whole resource table for each page
        join = (f"LEFT JOIN LATERAL (SELECT r.rid, r.res_type, r.res_id FROM resource r "
                f"WHERE {current} LIMIT 1) r ON TRUE" if self.db.dialect == "postgresql" else
                f"LEFT JOIN resource r ON {current}")
        sql = ("SELECT r.res_type, r.res_id, v.version, v.last_updated, v.deleted, "
               f"CASE WHEN r.rid IS NULL THEN NULL ELSE v.body END, v.seq, {KEY_COLUMNS} FROM "
               "(SELECT seq, rid, version, last_updated, deleted, body, kid FROM "
               "resource_version WHERE seq > ? ORDER BY seq LIMIT ?) v "
               f"{join}{KEY_JOIN}")
        with self.db.reading() as cur:
            cur.execute(self._sql(sql), (after_seq, limit, False, *(types or ())))
            rows = sorted(cur.fetchall(), key=lambda row: row[6])  # in order already, mostly
        # no upper bound in the query: with one, PostgreSQL (statistics not yet gathered after
        # a load) may sort the whole range instead of reading the first rows of its key
        reached = int(rows[-1][6]) if len(rows) == limit else max_seq
        kept = [row for row in rows if row[0] is not None and row[6] <= max_seq]
        return min(reached, max_seq), self._opened(kept, "skip")

    def last_seq(self) -> int:
        with self.db.reading() as cur:
            cur.execute("SELECT COALESCE(MAX(seq), 0) FROM resource_version")
            return int(cur.fetchone()[0])

    def close(self) -> None:
        self.db.close()
